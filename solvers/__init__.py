"""Forward methods and differentiation backends for optimisation-defined layers.

A backend (`Unrolled`, `Implicit`, `Truncated`) decides how gradients pass through the inner
argmin; a forward method (`Nesterov`, `CoordinateNewton` for energies, `Sinkhorn` for
entropic transport problems) decides how the argmin is found. Any method composes with any
backend.
"""

from ._backend import AbstractBackend as AbstractBackend
from ._implicit import Implicit as Implicit
from ._linear_solve import LinearSolveStats as LinearSolveStats
from ._method import AbstractMethod as AbstractMethod
from ._nesterov import DIVERGENCE_RATIO as DIVERGENCE_RATIO
from ._nesterov import Nesterov as Nesterov
from ._nesterov import inverse_softplus as inverse_softplus
from ._nesterov import max_stable_lr as max_stable_lr
from ._newton import CoordinateNewton as CoordinateNewton
from ._sinkhorn import EntropicOT as EntropicOT
from ._sinkhorn import Sinkhorn as Sinkhorn
from ._sinkhorn import dual_energy as dual_energy
from ._solution import Solution as Solution
from ._solution import Stats as Stats
from ._truncated import Truncated as Truncated
from ._unrolled import Unrolled as Unrolled

"""Forward methods, differentiation backends and linear solvers for optimisation-defined
layers: three independent strategy axes, each a value.

A forward method (`Nesterov`, `Newton`, `Anderson`, `CoordinateNewton` for energies;
`Sinkhorn` for entropic transport problems) finds the argmin; a backend (`Unrolled`,
`Checkpointed`, `Truncated`, `Implicit`, `Phantom`) decides how gradients pass through it;
Implicit's backward linear solver is a lineax solver. Any method composes with any backend.
"""

from . import backends as backends
from . import linear as linear
from . import methods as methods
from ._entropic_ot import EntropicOT as EntropicOT
from ._entropic_ot import dual_energy as dual_energy
from ._entropic_ot import transport_optimality as transport_optimality
from ._solution import Solution as Solution
from ._solution import Stats as Stats
from .backends import AbstractBackend as AbstractBackend
from .backends import Checkpointed as Checkpointed
from .backends import Implicit as Implicit
from .backends import Phantom as Phantom
from .backends import Truncated as Truncated
from .backends import Unrolled as Unrolled
from .linear import LinearSolveStats as LinearSolveStats
from .methods import DIVERGENCE_RATIO as DIVERGENCE_RATIO
from .methods import AbstractMethod as AbstractMethod
from .methods import Anderson as Anderson
from .methods import CoordinateNewton as CoordinateNewton
from .methods import Nesterov as Nesterov
from .methods import Newton as Newton
from .methods import Sinkhorn as Sinkhorn
from .methods import inverse_softplus as inverse_softplus
from .methods import max_stable_lr as max_stable_lr
from .methods import sinkhorn_sweep as sinkhorn_sweep

"""Forward methods: how the inner argmin is found. Any method composes with any backend."""

from ._abstract import AbstractMethod as AbstractMethod
from ._anderson import Anderson as Anderson
from ._coordinate_newton import CoordinateNewton as CoordinateNewton
from ._keywords import method_from as method_from
from ._nesterov import DIVERGENCE_RATIO as DIVERGENCE_RATIO
from ._nesterov import Nesterov as Nesterov
from ._nesterov import inverse_softplus as inverse_softplus
from ._nesterov import max_stable_lr as max_stable_lr
from ._newton import Newton as Newton
from ._sinkhorn import Sinkhorn as Sinkhorn
from ._sinkhorn import sinkhorn_sweep as sinkhorn_sweep

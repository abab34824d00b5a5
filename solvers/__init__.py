"""The inner optimizer and the differentiation backends of eqx_agg's aggregation layers."""

from ._backend import DIVERGENCE_RATIO as DIVERGENCE_RATIO
from ._backend import AbstractBackend as AbstractBackend
from ._implicit import Implicit as Implicit
from ._nesterov import Nesterov as Nesterov
from ._nesterov import inverse_softplus as inverse_softplus
from ._nesterov import max_stable_lr as max_stable_lr
from ._solution import Solution as Solution
from ._solution import Stats as Stats
from ._truncated import Truncated as Truncated
from ._unrolled import Unrolled as Unrolled

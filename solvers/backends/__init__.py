"""Differentiation backends: how gradients pass through the inner argmin."""

from ._abstract import AbstractBackend as AbstractBackend
from ._checkpointed import Checkpointed as Checkpointed
from ._implicit import Implicit as Implicit
from ._phantom import Phantom as Phantom
from ._truncated import Truncated as Truncated
from ._unrolled import Unrolled as Unrolled

"""Baseline set poolings with the call shape of the EA layer: `pool(x, mask=None)` and
`pool.segments(x, segment_ids, num_segments, mask=None)`."""

from ._abstract import AbstractPooling as AbstractPooling
from ._attention import MultiHeadAttention as MultiHeadAttention
from ._max import Max as Max
from ._mean import Mean as Mean
from ._pna import PNA as PNA
from ._sum import Sum as Sum

"""Coordinate-wise max pooling."""

from jaxtyping import Array, Bool, Float, Int

from .._segments import segment_masked_max
from ._abstract import AbstractPooling


class Max(AbstractPooling):
    """Coordinate-wise max pooling, `max_i x_i` (zeros for an empty set). `[n, d] → [d]`."""

    def output_size(self, in_size: int) -> int:
        return in_size

    def _segments(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> Float[Array, "s d"]:
        return segment_masked_max(x, segment_ids, num_segments, mask)

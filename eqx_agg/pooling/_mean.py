"""Mean pooling."""

from jaxtyping import Array, Bool, Float, Int

from .._segments import segment_masked_mean
from ._abstract import AbstractPooling


class Mean(AbstractPooling):
    """Mean pooling, `Σ_i x_i / n` (zeros for an empty set). `[n, d] → [d]`."""

    def output_size(self, in_size: int) -> int:
        return in_size

    def _segments(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> Float[Array, "s d"]:
        return segment_masked_mean(x, segment_ids, num_segments, mask)

"""Sum pooling (Deep Sets)."""

from jaxtyping import Array, Bool, Float, Int

from .._segments import segment_masked_sum
from ._abstract import AbstractPooling


class Sum(AbstractPooling):
    """Sum pooling, `Σ_i x_i` (Deep Sets, Zaheer et al., 2017). `[n, d] → [d]`."""

    def output_size(self, in_size: int) -> int:
        return in_size

    def _segments(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> Float[Array, "s d"]:
        return segment_masked_sum(x, segment_ids, num_segments, mask)

"""The abstract pooling: a closed-form aggregation with a row mask."""

import abc

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._abstract import AbstractAggregation
from .._checks import check_mask, check_segment_range, check_segments, check_set


class AbstractPooling(AbstractAggregation):
    """A closed-form set pooling, an [`eqx_agg.AbstractAggregation`][] like the EA layer.

    `pool(x, mask=None)` pools one set `x: [n, d]` into `[m]`; `pool.segments(x,
    segment_ids, num_segments, mask=None)` pools many sets stored together into
    `[num_segments, m]`. Rows where `mask` is False are ignored, so padding a set changes
    nothing; an empty set pools to zeros. The auxiliary loss is zero.

    Subclass this with `output_size` and `_segments` (which receives checked inputs and a
    full boolean mask) to add a pooling.
    """

    @abc.abstractmethod
    def _segments(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> Float[Array, "s m"]:
        """Pool checked inputs; `mask` is always given."""

    def aggregate_segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> tuple[Float[Array, "s m"], Float[Array, " s"]]:
        x = jnp.asarray(x)
        check_set(x)
        check_segments(segment_ids, num_segments, x)
        mask = check_mask(mask, x)
        segment_ids = check_segment_range(jnp.asarray(segment_ids), num_segments, mask)
        self.output_size(x.shape[1])
        pooled = self._segments(x, segment_ids, num_segments, mask)
        return pooled, jnp.zeros(num_segments, pooled.dtype)

"""The abstract pooling: one set or many sets stored together, with a row mask."""

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._checks import check_mask, check_segment_range, check_segments, check_set


class AbstractPooling(eqx.Module):
    """A set pooling with the call shape of [`eqx_agg.EquilibriumAggregation`][].

    `pool(x, mask=None)` pools one set `x: [n, d]` into `[m]`; `pool.segments(x,
    segment_ids, num_segments, mask=None)` pools many sets stored together into
    `[num_segments, m]`. Rows where `mask` is False are ignored, so padding a set changes
    nothing; an empty set pools to zeros.

    Subclass this with `output_size` and `_segments` (which receives checked inputs and a
    full boolean mask) to add a pooling.
    """

    @abc.abstractmethod
    def output_size(self, in_size: int) -> int:
        """Size `m` of the pooled vector for elements of size `in_size`; raises
        `ValueError` if the pooling cannot take elements of that size."""

    @abc.abstractmethod
    def _segments(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> Float[Array, "s m"]:
        """Pool checked inputs; `mask` is always given."""

    def __call__(
        self, x: Float[ArrayLike, "n d"], mask: Bool[ArrayLike, " n"] | None = None
    ) -> Float[Array, " m"]:
        """Pool one set: `x: [n, d]`, `mask: [n]` → `[m]`."""
        x = jnp.asarray(x)
        n = check_set(x)
        return self.segments(x, jnp.zeros(n, jnp.int32), 1, mask)[0]

    def segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> Float[Array, "s m"]:
        """Pool many sets stored together: element `i` belongs to set `segment_ids[i]`.

        `x: [n, d]`, `segment_ids: [n]` ints in `[0, num_segments)` (others raise),
        `mask: [n]` → `[num_segments, m]`.
        """
        x = jnp.asarray(x)
        check_set(x)
        check_segments(segment_ids, num_segments, x)
        mask = check_mask(mask, x)
        segment_ids = check_segment_range(jnp.asarray(segment_ids), num_segments, mask)
        self.output_size(x.shape[1])
        return self._segments(x, segment_ids, num_segments, mask)

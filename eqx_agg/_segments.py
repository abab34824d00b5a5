"""Reductions over sets stored together: element `i` belongs to set `segment_ids[i]` and counts
only where `mask[i]`. An empty set reduces to zeros."""

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


def segment_sum(
    data: Float[Array, "n ..."], segment_ids: Int[Array, " n"], num_segments: int
) -> Float[Array, "s ..."]:
    """`jax.ops.segment_sum`; a plain (deterministic, scatter-free) sum for a single set."""
    if num_segments == 1:
        return jnp.sum(data, axis=0, keepdims=True)
    return jax.ops.segment_sum(data, segment_ids, num_segments)


def segment_max(
    data: Float[Array, "n ..."], segment_ids: Int[Array, " n"], num_segments: int
) -> Float[Array, "s ..."]:
    """`jax.ops.segment_max` (`-inf` for an empty set); a plain max for a single set."""
    if num_segments == 1:
        return jnp.max(data, axis=0, keepdims=True, initial=-jnp.inf)
    return jax.ops.segment_max(data, segment_ids, num_segments)


def segment_counts(
    segment_ids: Int[Array, " n"], num_segments: int, mask: Bool[Array, " n"], dtype: Any
) -> Float[Array, " s"]:
    """Number of unmasked elements in each set."""
    return segment_sum(mask.astype(dtype), segment_ids, num_segments)


def segment_masked_sum(
    x: Float[Array, "n d"], segment_ids: Int[Array, " n"], num_segments: int, mask
) -> Float[Array, "s d"]:
    """Sum of the unmasked rows of each set."""
    return segment_sum(jnp.where(mask[:, None], x, 0), segment_ids, num_segments)


def segment_masked_mean(
    x: Float[Array, "n d"], segment_ids: Int[Array, " n"], num_segments: int, mask
) -> Float[Array, "s d"]:
    """Mean of the unmasked rows of each set."""
    counts = segment_counts(segment_ids, num_segments, mask, x.dtype)
    total = segment_masked_sum(x, segment_ids, num_segments, mask)
    return total / jnp.maximum(counts, 1)[:, None]


def segment_masked_max(
    x: Float[Array, "n d"], segment_ids: Int[Array, " n"], num_segments: int, mask
) -> Float[Array, "s d"]:
    """Coordinate-wise max of the unmasked rows of each set."""
    counts = segment_counts(segment_ids, num_segments, mask, x.dtype)
    top = segment_max(jnp.where(mask[:, None], x, -jnp.inf), segment_ids, num_segments)
    return jnp.where(counts[:, None] > 0, top, 0)


def segment_masked_min(
    x: Float[Array, "n d"], segment_ids: Int[Array, " n"], num_segments: int, mask
) -> Float[Array, "s d"]:
    """Coordinate-wise min of the unmasked rows of each set."""
    return -segment_masked_max(-x, segment_ids, num_segments, mask)

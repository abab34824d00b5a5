"""Trace-time input checks shared by the aggregation layer and the baseline poolings.

Wrong shapes raise `ValueError`, wrong dtypes `TypeError` (as jaxtyping's checks do).
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int


def check_set(x: Array) -> int:
    """Raise `ValueError` unless `x` is one set `[n, d]`; return `n`."""
    if x.ndim != 2:
        raise ValueError(f"x must have shape [n, d] (one set), got shape {x.shape}")
    return x.shape[0]


def check_mask(mask: Array | None, x: Array) -> Array:
    """The boolean row mask of `x` (all True when `mask` is None), checked against `x`."""
    if mask is None:
        return jnp.ones(x.shape[0], bool)
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}")
    if mask.shape != (x.shape[0],):
        raise ValueError(
            f"mask must have shape ({x.shape[0]},) to match x of shape {x.shape}, "
            f"got shape {mask.shape}"
        )
    return mask


def check_segments(segment_ids: Array, num_segments: int, x: Array) -> None:
    """Raise `ValueError` unless `segment_ids` is an integer `[n]` for `x: [n, d]` and
    `num_segments >= 1`."""
    n = x.shape[0]
    segment_ids = jnp.asarray(segment_ids)
    if not jnp.issubdtype(segment_ids.dtype, jnp.integer):
        raise TypeError(f"segment_ids must be an integer array, got dtype {segment_ids.dtype}")
    if segment_ids.shape != (n,):
        raise ValueError(
            f"segment_ids must have shape ({n},) to match x of shape {x.shape}, "
            f"got shape {segment_ids.shape}"
        )
    if num_segments < 1:
        raise ValueError(f"num_segments must be at least 1, got {num_segments}")


def check_segment_range(
    segment_ids: Int[Array, " n"], num_segments: int, mask: Bool[Array, " n"]
) -> Int[Array, " n"]:
    """`segment_ids`, raising at run time (`eqx.error_if`) when an unmasked row's id lies
    outside `[0, num_segments)`: such a row would otherwise be dropped silently."""
    outside = mask & ((segment_ids < 0) | (segment_ids >= num_segments))
    return eqx.error_if(
        segment_ids,
        jnp.any(outside),
        f"segment_ids of unmasked rows must lie in [0, num_segments = {num_segments})",
    )

"""Trace-time input checks shared by the aggregation layer and the baseline poolings.

Wrong shapes raise `ValueError`, wrong dtypes `TypeError` (as jaxtyping's checks do).
"""

import jax.numpy as jnp
from jaxtyping import Array


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

"""Trace-time input checks shared by the aggregation layer and the baseline poolings.

Wrong shapes raise `ValueError`, wrong dtypes `TypeError` (as jaxtyping's checks do).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int

import solvers


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


def check_backend(solver: object) -> solvers.AbstractBackend:
    """`solver` if it is a differentiation backend; `TypeError` saying what to pass instead
    (a backend class, a string, a forward method, anything else)."""
    example = "a backend value such as solvers.Unrolled(steps=10) or solvers.Implicit()"
    if isinstance(solver, solvers.AbstractBackend):
        return solver
    if isinstance(solver, type) and issubclass(solver, solvers.AbstractBackend):
        raise TypeError(
            f"solver must be a backend instance, got the class solvers.{solver.__name__}: "
            f"call it, e.g. solvers.{solver.__name__}()"
        )
    if isinstance(solver, solvers.AbstractMethod):
        raise TypeError(
            f"solver must be a differentiation backend, got the forward method "
            f"{type(solver).__name__}: pass it to a backend, e.g. "
            f"solvers.Implicit(method=solvers.{type(solver).__name__}(...))"
        )
    raise TypeError(f"solver must be {example}, got {solver!r}")


def floating_dtype(module: eqx.Module, x: Array):
    """The dtype a layer computes in: that of its floating-point parameters (x is cast to
    it), or, for a layer without any, `x`'s (at least float32)."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(module, eqx.is_inexact_array))
    if leaves:
        return jnp.result_type(*leaves)
    return jnp.result_type(x.dtype, jnp.float32)

"""Check that a set's aggregate does not depend on the other sets computed with it."""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._abstract import AbstractAggregation
from ._errors import VacuousCheck
from ._inputs import (
    assert_close,
    checked_layer,
    checked_set,
    cotangent,
    data_scale,
    describe,
    evaluate,
    inexact_leaves,
    norm_error,
    require_finite,
    value_and_gradients,
    value_error,
)
from ._tolerances import gradient_tolerance, rounding_tolerance, solver_tolerance

CHECK = "batch independence"


def check_batch_independence(
    layer: AbstractAggregation,
    x: Float[ArrayLike, "n d"],
    segment_ids: Int[ArrayLike, " n"],
    num_segments: int,
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    gradients: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> float:
    """Check that each set's aggregate is the same alone, inside a `jax.vmap` batch and
    inside `layer.segments` with the other sets, and so are the gradients.

    The sets are given stored together, as `segments` takes them (row `i` of `x` in set
    `segment_ids[i]`). Alone and in the `vmap` batch, each set is its elements in their
    stored order followed by masked zero rows, `n` rows in all. A layer that couples the
    sets of a batch (normalises by statistics of the whole input, or averages a term of its
    energy over the batch, as PyTorch Geometric's `EquilibriumAggregation` averages its
    regulariser) fails.

    **Arguments:**

    - `layer`: an [`eqx_agg.AbstractAggregation`][].
    - `x`: `[n, d]`; `segment_ids`: `[n]`, ints in `[0, num_segments)`; `num_segments`,
      at least 2; `mask`: `[n]` (default: every row counts). Sets may be empty.
    - `gradients`: also compare the gradients of a fixed linear function of the aggregates
      w.r.t. `x` and the layer's parameters, by their relative 2-norm error.
    - `rtol`, `atol`: each set's aggregate passes within `rtol · scale + atol` of its value
      alone, `scale` the larger of its max-abs and its elements'; a gradient within
      `rtol + atol` relative error. Default `rtol`: 1000 eps of the result's dtype for the
      aggregates, `10 √eps` for the gradients (a linear solve amplifies rounding); default
      `atol`: the layer's solver tolerance, as for
      [`eqx_agg.testing.check_permutation_invariance`][].
    - `seed`: of the linear function's weights.

    **Returns:** the largest error measured, relative to the scale.

    **Raises:** [`eqx_agg.testing.PropertyViolation`][] if a set's aggregate or a gradient
    differs; [`eqx_agg.testing.VacuousCheck`][] with fewer than two sets, every set empty,
    an aggregate alone that is not finite, or a zero gradient w.r.t. `x` alone.
    """
    layer = checked_layer(layer)
    x, mask = checked_set(x, mask)
    ids = np.asarray(segment_ids)
    if ids.shape != (len(x),) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"segment_ids must be integers of shape ({len(x)},), got {ids.dtype}{ids.shape}"
        )
    rows = [np.flatnonzero(np.asarray(mask) & (ids == s)) for s in range(num_segments)]
    if sum(map(len, rows)) != int(jnp.sum(mask)):
        raise ValueError(f"segment_ids of unmasked rows must lie in [0, {num_segments})")
    sizes = [len(r) for r in rows]
    context = f"{describe(x, mask)}, in {num_segments} sets of sizes {sizes}"
    if num_segments < 2 or not any(sizes):
        raise VacuousCheck(
            f"{CHECK}: needs two sets or more, one not empty, to show a coupling ({context})"
        )
    xs = np.zeros((num_segments, *x.shape), x.dtype)
    for s, r in enumerate(rows):
        xs[s, : len(r)] = np.asarray(x)[r]
    xs = jnp.asarray(xs)
    masks = jnp.arange(len(x))[None, :] < jnp.asarray(sizes)[:, None]
    weights = cotangent(seed, (num_segments, layer.output_size(x.shape[1])), x.dtype)
    ids = jnp.asarray(ids)
    arrangements = {
        "alone": _alone(layer, xs, masks, weights, rows, gradients),
        "in a jax.vmap batch": _batched(layer, xs, masks, weights, rows, gradients),
        "in layer.segments": _segmented(layer, x, ids, num_segments, mask, weights, gradients),
    }
    alone = arrangements.pop("alone")
    require_finite(alone.values, "an aggregate alone", CHECK, context)
    dtype = alone.values.dtype
    value_rtol = rounding_tolerance(dtype) if rtol is None else rtol
    gradient_rtol = gradient_tolerance(dtype) if rtol is None else rtol
    atol = solver_tolerance(layer, dtype) if atol is None else atol
    errors = []
    for where, got in arrangements.items():
        for s in range(num_segments):
            scale = max(float(jnp.max(jnp.abs(alone.values[s]))), data_scale(xs[s], masks[s]))
            error = value_error(got.values[s], alone.values[s])
            where_s = f"set {s} alone and {where}; {context}"
            errors.append(assert_close(CHECK, layer, error, scale, value_rtol, atol, where_s))
    if gradients:
        errors.extend(_gradient_errors(layer, alone, arrangements, gradient_rtol + atol, context))
    return max(errors)


class _Arrangement(NamedTuple):
    """The aggregates `[s, k]` of the sets in one arrangement and, with gradients, those of
    `Σ weights ⊙ aggregates` w.r.t. the layer's parameters (flattened) and the stored rows
    of `x`, `[n, d]`."""

    values: Float[Array, "s k"]
    grad_layer: np.ndarray | None = None
    grad_x: Float[np.ndarray, "n d"] | None = None


def _gradient_errors(layer, alone, arrangements, tolerance, context) -> list[float]:
    """Relative 2-norm errors of the gradients in each arrangement against those alone."""
    if not np.any(alone.grad_x):
        raise VacuousCheck(f"{CHECK}: the gradient w.r.t. x alone is zero ({context})")
    parts = {"x": lambda a: a.grad_x}
    if np.any(alone.grad_layer):
        parts["the layer's parameters"] = lambda a: a.grad_layer
    errors = []
    for where, got in arrangements.items():
        for part, read in parts.items():
            error = norm_error(read(got), read(alone))
            where_part = f"gradients w.r.t. {part} alone and {where}; {context}"
            errors.append(assert_close(CHECK, layer, error, 1.0, tolerance, 0.0, where_part))
    return errors


def _stored(grad_xs: Float[Array, "s n d"], rows: list[np.ndarray]) -> Float[np.ndarray, "n d"]:
    """Gradients w.r.t. each set's rows `[s, n, d]` (its elements first) back at the rows
    where the sets are stored."""
    grad_xs = np.asarray(grad_xs)
    stored = np.zeros(grad_xs.shape[1:], grad_xs.dtype)
    for grad, r in zip(grad_xs, rows, strict=True):
        stored[r] = grad[: len(r)]
    return stored


def _alone(layer, xs, masks, weights, rows, gradients: bool) -> _Arrangement:
    """Each set by itself."""
    if not gradients:
        return _Arrangement(
            jnp.stack([evaluate(layer, a, m) for a, m in zip(xs, masks, strict=True)])
        )
    results = [
        value_and_gradients(layer, a, m, w) for a, m, w in zip(xs, masks, weights, strict=True)
    ]
    values, grad_layers, grad_xs = zip(*results, strict=True)
    return _Arrangement(
        jnp.stack(values),
        np.sum([inexact_leaves(g) for g in grad_layers], axis=0),
        _stored(jnp.stack(grad_xs), rows),
    )


def _batched(layer, xs, masks, weights, rows, gradients: bool) -> _Arrangement:
    """The sets as one `jax.vmap` batch."""
    if not gradients:
        return _Arrangement(_batch_values(layer, xs, masks))
    values, grad_layer, grad_xs = _batch_gradients(layer, xs, masks, weights)
    return _Arrangement(values, inexact_leaves(grad_layer), _stored(grad_xs, rows))


def _segmented(layer, x, ids, num_segments, mask, weights, gradients: bool) -> _Arrangement:
    """The sets stored together, through `layer.segments`."""
    if not gradients:
        return _Arrangement(_segment_values(layer, x, ids, num_segments, mask))
    values, grad_layer, grad_x = _segment_gradients(layer, x, ids, num_segments, mask, weights)
    return _Arrangement(values, inexact_leaves(grad_layer), np.asarray(grad_x))


@eqx.filter_jit
def _batch_values(layer, xs, masks):
    return jax.vmap(layer)(xs, masks)


@eqx.filter_jit
def _batch_gradients(layer, xs, masks, weights):
    def loss(both):
        values = jax.vmap(both[0])(both[1], masks)
        return jnp.sum(weights * values), values

    (_, values), (grad_layer, grad_xs) = eqx.filter_value_and_grad(loss, has_aux=True)((layer, xs))
    return values, grad_layer, grad_xs


@eqx.filter_jit
def _segment_values(layer, x, segment_ids, num_segments, mask):
    return layer.segments(x, segment_ids, num_segments, mask)


@eqx.filter_jit
def _segment_gradients(layer, x, segment_ids, num_segments, mask, weights):
    def loss(both):
        values = both[0].segments(both[1], segment_ids, num_segments, mask)
        return jnp.sum(weights * values), values

    (_, values), (grad_layer, grad_x) = eqx.filter_value_and_grad(loss, has_aux=True)((layer, x))
    return values, grad_layer, grad_x

"""Checks that a layer sees a set, not an array: the order of its elements and the masked
rows around them change nothing."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Bool, Float

from .._abstract import AbstractAggregation
from ._errors import PropertyViolation, VacuousCheck
from ._inputs import (
    assert_close,
    checked_layer,
    checked_set,
    cotangent,
    data_scale,
    describe,
    evaluate,
    require_elements,
    require_finite,
    value_and_gradients,
    value_error,
)
from ._tolerances import rounding_tolerance, solver_tolerance

GARBAGE = (np.nan, np.inf, -np.inf, 1e30)
"""What the padding check writes into masked rows, cycling through these values."""


def check_permutation_invariance(
    layer: AbstractAggregation,
    x: Float[ArrayLike, "n d"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    permutations: int = 2,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> float:
    """Check that permuting the rows of a set (the mask with them) leaves its aggregate
    unchanged: the rows reversed, then `permutations - 1` random orders.

    **Arguments:**

    - `layer`: an [`eqx_agg.AbstractAggregation`][].
    - `x`: `[n, d]`; `mask`: `[n]` (default: every row counts).
    - `permutations`: how many orders to try; `seed`: of the random orders.
    - `rtol`, `atol`: an aggregate passes within `rtol · scale + atol` of the unpermuted
      one, `scale` the larger of its max-abs and the set's. Default `rtol`: 1000 eps of the
      result's dtype (sums in another order round differently); default `atol`: the layer's
      solver tolerance for that dtype, `solver.method.resolve(dtype).tolerance` (two solves
      stopped at a tolerance agree to about it; 0 for a closed-form pooling).

    **Returns:** the largest error measured, relative to the scale.

    **Raises:** [`eqx_agg.testing.PropertyViolation`][] if an order changes the aggregate;
    [`eqx_agg.testing.VacuousCheck`][] if the set has fewer than two distinct elements (every
    order is the same set) or its aggregate is not finite.
    """
    check = "permutation invariance"
    layer = checked_layer(layer)
    x, mask = checked_set(x, mask)
    require_elements(x, mask, check)
    context = describe(x, mask)
    elements = np.asarray(x)[np.asarray(mask)]
    if len(elements) < 2 or np.all(elements == elements[0]):
        raise VacuousCheck(
            f"{check}: every order of the set is the same set (fewer than two distinct "
            f"elements: {context}); draw at least two that differ"
        )
    reference = evaluate(layer, x, mask)
    require_finite(reference, "the aggregate of the set", check, context)
    rtol = rounding_tolerance(reference.dtype) if rtol is None else rtol
    atol = solver_tolerance(layer, reference.dtype) if atol is None else atol
    scale = max(float(jnp.max(jnp.abs(reference))), data_scale(x, mask))
    rng = np.random.default_rng(seed)
    orders = [np.arange(len(x))[::-1], *(rng.permutation(len(x)) for _ in range(permutations - 1))]
    errors = []
    for order in orders:
        error = value_error(evaluate(layer, x[order], mask[order]), reference)
        where = f"rows in the order {order.tolist()}; {context}"
        errors.append(assert_close(check, layer, error, scale, rtol, atol, where))
    return max(errors)


def check_padding_invariance(
    layer: AbstractAggregation,
    x: Float[ArrayLike, "n d"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> float:
    """Check that masked rows change neither the aggregate nor receive a gradient.

    Compares the aggregate of the set with its masked rows zeroed (the reference) with that
    of `(x, mask)` as given, after its masked rows are overwritten with NaN, ±inf and 1e30,
    and after as many masked rows again, of those values, are appended. With the masked rows
    overwritten, the gradient of a fixed linear function of the aggregate w.r.t. `x` must be
    finite, and exactly zero on every masked row.

    **Arguments:**

    - `layer`: an [`eqx_agg.AbstractAggregation`][].
    - `x`: `[n, d]`; `mask`: `[n]` (default: every row counts; rows are still appended).
    - `rtol`, `atol`: as for [`eqx_agg.testing.check_permutation_invariance`][].
    - `seed`: of the linear function's weights.

    **Returns:** the largest error of the aggregate measured, relative to the scale.

    **Raises:** [`eqx_agg.testing.PropertyViolation`][] if padding changes the aggregate, a
    masked row receives a gradient, or a gradient is not finite;
    [`eqx_agg.testing.VacuousCheck`][] if every row is masked, the aggregate is not finite,
    or the gradient w.r.t. the unmasked rows is zero.
    """
    check = "padding invariance"
    layer = checked_layer(layer)
    x, mask = checked_set(x, mask)
    require_elements(x, mask, check)
    context = describe(x, mask)
    reference = evaluate(layer, jnp.where(mask[:, None], x, 0), mask)
    require_finite(reference, "the aggregate of the set, masked rows zeroed", check, context)
    rtol = rounding_tolerance(reference.dtype) if rtol is None else rtol
    atol = solver_tolerance(layer, reference.dtype) if atol is None else atol
    scale = max(float(jnp.max(jnp.abs(reference))), data_scale(x, mask))
    garbage = jnp.resize(jnp.asarray(GARBAGE, x.dtype), x.shape)
    overwritten = jnp.where(mask[:, None], x, garbage)
    weights = cotangent(seed, reference.shape, reference.dtype)
    value, _, grad = value_and_gradients(layer, overwritten, mask, weights)
    appended = evaluate(
        layer,
        jnp.concatenate([overwritten, garbage]),
        jnp.concatenate([mask, jnp.zeros_like(mask)]),
    )
    errors = []
    for got, what in [
        (evaluate(layer, x, mask), "masked rows as given"),
        (value, "masked rows overwritten with NaN, ±inf, 1e30"),
        (appended, f"{len(x)} masked rows of NaN, ±inf, 1e30 appended"),
    ]:
        error = value_error(got, reference)
        errors.append(assert_close(check, layer, error, scale, rtol, atol, f"{what}; {context}"))
    _check_no_gradient(layer, np.asarray(grad), np.asarray(mask), context)
    return max(errors)


def _check_no_gradient(
    layer: AbstractAggregation,
    grad: Float[np.ndarray, "n d"],
    mask: Bool[np.ndarray, " n"],
    context: str,
) -> None:
    """`PropertyViolation` unless `grad` is finite and zero on the masked rows;
    `VacuousCheck` if it is zero on the unmasked rows too."""
    check = "padding invariance"
    name = type(layer).__name__
    not_finite = np.flatnonzero(~np.all(np.isfinite(grad), axis=1))
    if len(not_finite):
        raise PropertyViolation(
            check,
            float("inf"),
            0.0,
            f"{check} violated by {name}: the gradient w.r.t. x is not finite on rows "
            f"{not_finite.tolist()} ({np.sum(~mask[not_finite])} of them masked, with NaN, "
            f"±inf, 1e30 in the masked rows); {context}",
        )
    unmasked = float(np.max(np.abs(grad[mask]), initial=0.0))
    if unmasked == 0:
        raise VacuousCheck(
            f"{check}: the gradient w.r.t. the unmasked rows is zero, so a zero gradient on "
            f"the masked rows would show nothing ({context})"
        )
    leak = float(np.max(np.abs(grad[~mask]), initial=0.0))
    if leak != 0:
        raise PropertyViolation(
            check,
            leak / unmasked,
            0.0,
            f"{check} violated by {name}: masked rows receive a gradient, max {leak:.3g} "
            f"against {unmasked:.3g} on the unmasked rows ({np.sum(np.any(grad[~mask] != 0, 1))} "
            f"masked rows); {context}",
        )

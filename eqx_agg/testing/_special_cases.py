"""Check a special case the user declares: on some inputs the layer has a known value."""

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .._abstract import AbstractAggregation
from ._inputs import (
    assert_close,
    checked_layer,
    checked_set,
    data_scale,
    describe,
    evaluate,
    require_elements,
    require_finite,
    value_error,
)
from ._tolerances import rounding_tolerance, solver_tolerance


def check_special_case(
    layer: AbstractAggregation,
    x: Float[ArrayLike, "n d"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    expected: Callable[[Float[Array, "m d"]], Float[ArrayLike, " k"]],
    rtol: float | None = None,
    atol: float | None = None,
    name: str | None = None,
) -> float:
    """Check that the aggregate of a set is `expected(elements)`, a value known in closed
    form (e.g. "this energy's argmin is the mean": `expected=lambda x: x.mean(0)`).

    **Arguments:**

    - `layer`: an [`eqx_agg.AbstractAggregation`][].
    - `x`: `[n, d]`; `mask`: `[n]` (default: every row counts).
    - `expected`: maps the set's elements, the unmasked rows of `x` (`[m, d]`, `m >= 1`),
      to the aggregate `[k]`.
    - `rtol`, `atol`: the aggregate passes within `rtol · scale + atol` of the expected
      value, `scale` the larger of its max-abs and the set's. Defaults as for
      [`eqx_agg.testing.check_permutation_invariance`][]: rounding, and the layer solver's
      tolerance; raise them for a special case that holds only in a limit (a smoothed
      median or max).
    - `name`: what the special case is, for the message (default: `expected`'s name).

    **Returns:** the error measured, relative to the scale.

    **Raises:** [`eqx_agg.testing.PropertyViolation`][] if the aggregate differs;
    [`eqx_agg.testing.VacuousCheck`][] for an empty set or a non-finite expected value;
    `ValueError` if `expected` returns another shape than the layer.
    """
    layer = checked_layer(layer)
    x, mask = checked_set(x, mask)
    check = f"special case {name or getattr(expected, '__name__', 'expected')!r}"
    require_elements(x, mask, check)
    context = describe(x, mask)
    reference = jnp.asarray(expected(jnp.asarray(np.asarray(x)[np.asarray(mask)])))
    require_finite(reference, "the expected value", check, context)
    got = evaluate(layer, x, mask)
    if got.shape != reference.shape:
        raise ValueError(
            f"{check}: expected returned shape {reference.shape}, the layer {got.shape}"
        )
    dtype = jnp.result_type(got.dtype, reference.dtype)
    rtol = rounding_tolerance(dtype) if rtol is None else rtol
    atol = solver_tolerance(layer, dtype) if atol is None else atol
    scale = max(float(jnp.max(jnp.abs(reference))), data_scale(x, mask))
    return assert_close(check, layer, value_error(got, reference), scale, rtol, atol, context)

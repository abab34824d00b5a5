"""What every check shares: input validation, a description of the input for messages, the
comparison of a result with its reference, and the jitted calls of the layer."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PyTree, Scalar

from .._abstract import AbstractAggregation, AbstractSolvedAggregation
from ._errors import PropertyViolation, VacuousCheck


def checked_layer(layer: object) -> AbstractAggregation:
    """`layer` if it is an aggregation; `TypeError` naming what a check takes otherwise."""
    if not isinstance(layer, AbstractAggregation):
        raise TypeError(
            "expected an eqx_agg.AbstractAggregation (EquilibriumAggregation, OTKE, ROTP, a "
            f"pooling, or your subclass), got {type(layer).__name__}"
        )
    return layer


def checked_solved_layer(layer: object) -> AbstractSolvedAggregation:
    """`layer` if it is computed by a solver; `TypeError` otherwise."""
    if not isinstance(checked_layer(layer), AbstractSolvedAggregation):
        raise TypeError(
            "expected an eqx_agg.AbstractSolvedAggregation (a layer with a solver: "
            f"EquilibriumAggregation, OTKE, ROTP), got {type(layer).__name__}"
        )
    return layer


def checked_set(
    x: Float[ArrayLike, "n d"], mask: Bool[ArrayLike, " n"] | None
) -> tuple[Float[Array, "n d"], Bool[Array, " n"]]:
    """`x` as a floating-point `[n, d]` array and its `[n]` boolean mask (all True for None);
    `ValueError`/`TypeError` naming the expected shapes and dtypes otherwise."""
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be one set of shape [n, d], got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    if mask is None:
        return x, jnp.ones(x.shape[0], bool)
    mask = jnp.asarray(mask)
    if mask.shape != (x.shape[0],):
        raise ValueError(f"mask must have shape ({x.shape[0]},) for x of shape {x.shape}, "
                         f"got shape {mask.shape}")  # fmt: skip
    if mask.dtype != jnp.bool_:
        raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}")
    return x, mask


def data_scale(x: Float[Array, "n d"], mask: Bool[Array, " n"]) -> float:
    """The largest magnitude among the unmasked elements (0 for none)."""
    return float(jnp.max(jnp.where(mask[:, None], jnp.abs(x), 0), initial=0.0))


def describe(x: Float[Array, "n d"], mask: Bool[Array, " n"]) -> str:
    """The input, for messages: dtype, shape, unmasked rows, scale."""
    n_rows, d = x.shape
    return (
        f"x: {x.dtype}[{n_rows}, {d}] with n = {int(jnp.sum(mask))} unmasked rows, "
        f"max|x| = {data_scale(x, mask):.3g} over them"
    )


def require_elements(x: Float[Array, "n d"], mask: Bool[Array, " n"], check: str) -> None:
    """`VacuousCheck` when every row is masked (or there is none)."""
    if not bool(jnp.any(mask)):
        raise VacuousCheck(
            f"{check}: the set is empty ({describe(x, mask)}): an empty set aggregates to a "
            "fixed value whatever the layer does, so nothing would be tested; draw at least "
            "one element"
        )


def require_finite(reference: ArrayLike, what: str, check: str, context: str) -> None:
    """`VacuousCheck` when a reference value is not finite (every comparison would be NaN)."""
    if not bool(np.all(np.isfinite(np.asarray(reference)))):
        raise VacuousCheck(
            f"{check}: {what} is not finite, so there is nothing to compare with ({context})"
        )


def value_error(got: ArrayLike, reference: ArrayLike) -> float:
    """`max|got - reference|`, `inf` where `got` is not finite."""
    got, reference = np.asarray(got, np.float64), np.asarray(reference, np.float64)
    if got.shape != reference.shape:
        raise ValueError(f"shapes differ: {got.shape} and {reference.shape}")
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.max(np.abs(got - reference), initial=0.0))


def assert_close(
    check: str,
    layer: AbstractAggregation,
    error: float,
    scale: float,
    rtol: float,
    atol: float,
    context: str,
) -> float:
    """The error relative to `scale` after raising `PropertyViolation` unless
    `error <= rtol · scale + atol`."""
    allowed = rtol * scale + atol
    relative = error / scale if scale > 0 else (0.0 if error == 0 else float("inf"))
    if not error <= allowed:
        raise PropertyViolation(
            check,
            relative,
            rtol,
            f"{check} violated by {type(layer).__name__}: max abs difference {error:.3g} "
            f"(relative {relative:.3g} to the scale {scale:.3g}), allowed {allowed:.3g} "
            f"(rtol = {rtol:.3g}, atol = {atol:.3g}); {context}",
        )
    return relative


def norm_error(got: ArrayLike, reference: ArrayLike) -> float:
    """`||got - reference|| / ||reference||` over flattened arrays; `inf` where `got` is not
    finite; the reference must not be zero."""
    got, reference = np.ravel(np.asarray(got)), np.ravel(np.asarray(reference))
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.linalg.norm(got - reference) / np.linalg.norm(reference))


def inexact_leaves(tree: PyTree) -> np.ndarray:
    """Every floating-point array leaf of `tree`, flattened and concatenated (float64)."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    flat = [np.ravel(np.asarray(leaf, np.float64)) for leaf in leaves]
    return np.concatenate([np.zeros(0), *flat])


def cotangent(seed: int, shape: tuple[int, ...], dtype) -> Array:
    """Fixed weights of the linear loss `Σ w ⊙ layer(x)` whose gradients the checks compare."""
    return jax.random.normal(jax.random.key(seed), shape, dtype)


@eqx.filter_jit
def evaluate(
    layer: AbstractAggregation, x: Float[Array, "n d"], mask: Bool[Array, " n"]
) -> Float[Array, " k"]:
    """`layer(x, mask)`, compiled once per layer structure, shape and dtype."""
    return layer(x, mask)


@eqx.filter_jit
def value_and_gradients(
    layer: AbstractAggregation,
    x: Float[Array, "n d"],
    mask: Bool[Array, " n"],
    weights: Float[Array, " k"],
) -> tuple[Float[Array, " k"], AbstractAggregation, Float[Array, "n d"]]:
    """`layer(x, mask)` and the gradients of `Σ weights ⊙ layer(x, mask)` w.r.t. the layer
    and `x`."""

    def loss(both: tuple[AbstractAggregation, Array]) -> tuple[Scalar, Array]:
        value = both[0](both[1], mask)
        return jnp.sum(weights * value), value

    (_, value), (grad_layer, grad_x) = eqx.filter_value_and_grad(loss, has_aux=True)((layer, x))
    return value, grad_layer, grad_x

"""The contraction penalty: a Jacobian regulariser for a gradient-step forward."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def contraction_penalty(
    fn: Callable[[Array, Any], Array], y: Float[Array, "b m"], args: Any, lr: Float[ArrayLike, ""]
) -> Float[Array, " b"]:
    """`||(I − lr ∇²_y E) u||²` for each set at `y`, `u = ∇_y E / ||∇_y E||`: the squared
    factor by which one gradient step of size `lr` shrinks the residual along its own
    direction. On a quadratic energy it is exactly `||∇E(y − lr ∇E(y))||² / ||∇E(y)||²`.
    It is 0 where the gradient is 0 or not finite (a diverged set, which the solve's
    `stats.diverged` reports).

    `fn(y, args)` gives the `b` sets' energies `[b]` and must be row-separable (set `i`'s
    energy depends on row `i` of `y` only), as every solver's energy is.

    `I − lr ∇²E` is the Jacobian of the gradient step `y ↦ y − lr ∇E(y)`: this is the
    deep-equilibrium Jacobian regulariser (Bai, Koltun and Kolter, 2021) probed along the
    residual, where the forward's slowest or unstable mode shows, instead of along a random
    vector. Gradients reach the energy's parameters and inputs (through `args`) and an array
    `lr`, not `y` or `u`.
    """
    y = jax.lax.stop_gradient(y)

    def gradient(y):
        return jax.grad(lambda y: jnp.sum(fn(y, args)))(y)

    g = jax.lax.stop_gradient(gradient(y))
    usable = jnp.all(jnp.isfinite(g), axis=-1, keepdims=True) & jnp.any(g != 0, -1, keepdims=True)
    g = jnp.where(usable, g, 0)
    g = g / jnp.where(usable, jnp.max(jnp.abs(g), axis=-1, keepdims=True), 1)  # no overflow
    u = g / jnp.where(usable, jnp.sqrt(jnp.sum(g**2, axis=-1, keepdims=True)), 1)
    _, hessian_u = jax.jvp(gradient, (jnp.where(usable, y, 0),), (u,))
    shrunk = u - jnp.asarray(lr, y.dtype) * hessian_u
    return jnp.where(usable[:, 0], jnp.sum(shrunk**2, axis=-1), 0)

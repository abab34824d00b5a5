"""Truncated backpropagation: gradients through the last `k` inner steps only."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._backend import AbstractBackend
from ._nesterov import EnergyFn, Nesterov


class Truncated(AbstractBackend):
    """Run `steps` Nesterov steps; backpropagate through the last `k` only.

    The first `steps - k` steps run on stop-gradient inputs (no tape), so backward memory
    grows with `k`, not `steps`. `k = steps` is exactly [`solvers.Unrolled`][]. The auxiliary
    loss terms of the untaped steps carry no gradient.

    **Arguments:**

    - `steps`: total inner steps `T`; `k`: taped steps, `1 <= k <= steps`.
    - `lr`, `momentum`, `gtol`, `clip`: see [`solvers.Nesterov`][].
    - `throw`: raise on divergence (default) or report it in `stats`.
    """

    steps: int = eqx.field(static=True)
    k: int = eqx.field(static=True)
    optimizer: Nesterov
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        steps: int = 10,
        k: int = 2,
        lr: float = 0.125,
        momentum: float = 0.9,
        gtol: float = 1e-3,
        clip: float | None = None,
        throw: bool = True,
    ):
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if not 1 <= k <= steps:
            raise ValueError(f"k must satisfy 1 <= k <= steps = {steps}, got k = {k}")
        self.steps = steps
        self.k = k
        self.optimizer = Nesterov(lr, momentum, gtol, clip)
        self.throw = throw

    def _iterate(
        self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any
    ) -> tuple[Float[Array, "b m"], dict[str, Array]]:
        state = (y0, jnp.zeros_like(y0))
        histories = []
        if self.k < self.steps:
            optimizer, untaped_args = _stop_gradient((self.optimizer, args))
            state, history = optimizer.run(fn, state, untaped_args, self.steps - self.k)
            state = jax.lax.stop_gradient(state)
            histories.append(history)
        (y, _), history = self.optimizer.run(fn, state, args, self.k)
        histories.append(history)
        return y, {name: jnp.concatenate([h[name] for h in histories], axis=-1) for name in history}


def _stop_gradient(tree):
    """`lax.stop_gradient` on the floating-point arrays of a pytree; other leaves unchanged."""
    return jax.tree_util.tree_map(
        lambda leaf: jax.lax.stop_gradient(leaf) if eqx.is_inexact_array(leaf) else leaf, tree
    )

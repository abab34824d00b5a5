"""Backpropagation through every inner step: the paper's approach."""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._backend import AbstractBackend
from ._nesterov import EnergyFn, Nesterov


class Unrolled(AbstractBackend):
    """Differentiate through all `steps` Nesterov steps (the paper's choice).

    The exact gradient of the `steps`-step procedure, including gradients for the
    optimizer's lr and momentum. Memory of the backward pass grows linearly with `steps`.

    **Arguments:**

    - `steps`: number of inner steps `T`.
    - `lr`, `momentum`, `gtol`, `clip`: see [`solvers.Nesterov`][].
    - `throw`: raise on divergence (default) or report it in `stats`.
    """

    steps: int = eqx.field(static=True)
    optimizer: Nesterov
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        steps: int = 10,
        lr: float = 0.125,
        momentum: float = 0.9,
        gtol: float = 1e-3,
        clip: float | None = None,
        throw: bool = True,
    ):
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.steps = steps
        self.optimizer = Nesterov(lr, momentum, gtol, clip)
        self.throw = throw

    def _iterate(
        self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any
    ) -> tuple[Float[Array, "b m"], dict[str, Array]]:
        (y, _), history = self.optimizer.run(fn, (y0, jnp.zeros_like(y0)), args, self.steps)
        return y, history

"""Backpropagation through every inner step: the paper's approach."""

from typing import Any

import equinox as eqx
from jaxtyping import Array, Float

from ._backend import AbstractBackend, check_steps, method_from, scan_steps
from ._method import AbstractMethod, Bounds, EnergyFn


class Unrolled(AbstractBackend):
    """Differentiate through all `steps` inner steps (the paper's choice).

    The exact gradient of the `steps`-step procedure, including gradients for a learnable
    forward method's parameters (Nesterov's lr and momentum). Memory of the backward pass grows
    linearly with `steps`. Not converging is legitimate here: the gradient is that of what was
    computed, and training can learn the procedure; `stats.converged` reports it.

    **Arguments:**

    - `steps`: number of inner steps `T`.
    - `lr`, `momentum`, `gtol`, `clip`: the [`solvers.Nesterov`][] forward (defaults 0.125,
      0.9, 1e-3 as in Listing 2, no clip); or
    - `method`: any [`solvers.AbstractMethod`][] instead.
    - `throw`: raise on divergence (default) or report it in `stats`.
    """

    steps: int = eqx.field(static=True)
    method: AbstractMethod
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        steps: int = 10,
        lr: float | None = None,
        momentum: float | None = None,
        gtol: float | None = None,
        clip: float | None = None,
        *,
        method: AbstractMethod | None = None,
        throw: bool = True,
    ):
        self.steps = check_steps(steps, "steps")
        self.method = method_from(method, lr, momentum, gtol, clip, default_gtol=1e-3)
        self.throw = throw

    def with_steps(self, steps: int) -> "Unrolled":
        return Unrolled(steps, method=self.method, throw=self.throw)

    def _iterate(
        self,
        method: AbstractMethod,
        fn: EnergyFn,
        y0: Float[Array, "b m"],
        args: Any,
        bounds: Bounds | None,
    ):
        return scan_steps(method, fn, method.init(fn, y0, args, bounds), args, self.steps)

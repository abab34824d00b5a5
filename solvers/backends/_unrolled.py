"""Backpropagation through every inner step: the paper's approach."""

from typing import Any

import equinox as eqx
from jaxtyping import Array, Float

from .._checks import check_int
from .._problem import Bounds, EnergyFn, Optimality
from ..methods import AbstractMethod, method_from
from ._abstract import AbstractBackend
from ._loops import scan_steps


class Unrolled(AbstractBackend):
    """Differentiate through all `steps` inner steps (the paper's choice).

    The exact gradient of the `steps`-step procedure, including gradients for a learnable
    forward method's parameters (Nesterov's lr and momentum). Memory of the backward pass grows
    linearly with `steps` ([`solvers.Checkpointed`][] gives the same gradient in less).
    Not converging is legitimate here: the gradient is that of what was computed, and
    training can learn the procedure; `stats.converged` reports it. With the paper's
    tolerance (`gtol=1e-3`) a set stops early, and its gradient is that of the stopped
    procedure, which can be far from the argmin's: the derivative of the iterates converges
    more slowly than the iterates.

    **Arguments:**

    - `steps`: number of inner steps `T`.
    - `lr`, `momentum`, `gtol`, `clip`: the [`solvers.Nesterov`][] forward (defaults 0.125,
      0.9, 1e-3 as in Listing 2, no clip); or
    - `method`: any [`solvers.AbstractMethod`][]; with neither, the layer's own.
    - `throw`: raise on divergence (default) or report it in `stats`.
    """

    steps: int = eqx.field(static=True)
    method: AbstractMethod | None
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
        self.steps = check_int(steps, "steps")
        self.method = method_from(method, lr, momentum, gtol, clip, to_tolerance=False)
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
        optimality: Optimality | None,
    ):
        del optimality
        return scan_steps(method, fn, method.init(fn, y0, args, bounds), args, self.steps)

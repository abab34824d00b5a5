"""Unrolled's gradient in less memory: backpropagation through checkpointed steps."""

from typing import Any

import equinox as eqx
from jaxtyping import Array, Float

from .._checks import check_int
from .._problem import Bounds, EnergyFn, Optimality
from ..methods import AbstractMethod, method_from
from ._abstract import AbstractBackend
from ._loops import checkpointed_steps


class Checkpointed(AbstractBackend):
    """Differentiate through all `steps` inner steps, storing only `checkpoints` of them.

    Exactly [`solvers.Unrolled`][]'s values and gradients (the same procedure), with the
    backward pass recomputing the steps between stored states (Equinox's checkpointed scan,
    the scheme of Optimistix's `RecursiveCheckpointAdjoint`): memory grows like
    `checkpoints` states plus the steps between two of them, not like `steps` taped steps,
    for about one more forward pass of time.

    **Arguments:**

    - `steps`: number of inner steps `T`.
    - `checkpoints`: states stored (default `√T`); at least 1.
    - `lr`, `momentum`, `gtol`, `clip`, `method`: the forward method, as for
      [`solvers.Unrolled`][].
    - `throw`: raise on divergence (default) or report it in `stats`.
    """

    steps: int = eqx.field(static=True)
    checkpoints: int | None = eqx.field(static=True)
    method: AbstractMethod | None
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        steps: int = 10,
        checkpoints: int | None = None,
        lr: float | None = None,
        momentum: float | None = None,
        gtol: float | None = None,
        clip: float | None = None,
        *,
        method: AbstractMethod | None = None,
        throw: bool = True,
    ):
        self.steps = check_int(steps, "steps")
        self.checkpoints = None if checkpoints is None else check_int(checkpoints, "checkpoints")
        self.method = method_from(method, lr, momentum, gtol, clip, to_tolerance=False)
        self.throw = throw

    def with_steps(self, steps: int) -> "Checkpointed":
        return Checkpointed(steps, self.checkpoints, method=self.method, throw=self.throw)

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
        state = method.init(fn, y0, args, bounds)
        checkpoints = None if self.checkpoints is None else min(self.checkpoints, self.steps)
        return checkpointed_steps(method, fn, state, args, self.steps, checkpoints)

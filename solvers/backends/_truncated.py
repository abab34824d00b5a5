"""Truncated backpropagation: gradients through the last `k` inner steps only."""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_int
from .._problem import Bounds, EnergyFn, Optimality
from ..methods import AbstractMethod, method_from
from ._abstract import AbstractBackend
from ._loops import scan_steps, steps_to_tolerance, stop_gradient


class Truncated(AbstractBackend):
    """Run up to `steps` inner steps; backpropagate through the last `k` only.

    The first `steps - k` steps run untaped (a `while_loop` on stop-gradient inputs that ends
    once every set has met the tolerance), so backward memory grows with `k`, not `steps`.
    The last `k` steps are taped and take no notice of the tolerance (the method's
    `without_tolerance`): every set, converged or not, takes them, continuing from where the
    prefix left it (the method's `resume`), so each set's gradient is that of `k` steps from
    there (near a fixed point, the `k`-term Neumann series of the implicit gradient). With
    `k = steps` there is no prefix and Truncated is exactly [`solvers.Unrolled`][]. The
    auxiliary loss terms of the untaped steps carry no gradient.

    **Arguments:**

    - `steps`: total inner steps `T`; `k`: taped steps, `1 <= k <= steps`.
    - `lr`, `momentum`, `gtol`, `clip`, `method`: the forward method, as for
      [`solvers.Unrolled`][].
    - `throw`: raise on divergence (default) or report it in `stats`.
    """

    steps: int = eqx.field(static=True)
    k: int = eqx.field(static=True)
    method: AbstractMethod | None
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        steps: int = 10,
        k: int = 2,
        lr: float | None = None,
        momentum: float | None = None,
        gtol: float | None = None,
        clip: float | None = None,
        *,
        method: AbstractMethod | None = None,
        throw: bool = True,
    ):
        self.steps = check_int(steps, "steps")
        self.k = check_int(k, "k")
        if self.k > self.steps:
            raise ValueError(f"k must satisfy 1 <= k <= steps = {steps}, got k = {k}")
        self.method = method_from(method, lr, momentum, gtol, clip, to_tolerance=False)
        self.throw = throw

    def with_steps(self, steps: int) -> "Truncated":
        """With `steps` inner steps and `min(k, steps)` taped ones."""
        k = min(self.k, check_int(steps, "steps"))
        return Truncated(steps, k, method=self.method, throw=self.throw)

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
        if self.k == self.steps:
            return scan_steps(method, fn, state, args, self.k)
        untaped_method, untaped_args = stop_gradient((method, args))
        state, prefix = steps_to_tolerance(
            untaped_method, fn, stop_gradient(state), untaped_args, self.steps - self.k
        )
        state = method.resume(state)  # every set takes the taped steps
        state, taped = scan_steps(method.without_tolerance(), fn, state, args, self.k)
        return state, {name: jnp.concatenate([prefix[name], taped[name]], -1) for name in taped}

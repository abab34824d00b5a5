"""Truncated backpropagation: gradients through the last `k` inner steps only."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._backend import AbstractBackend, check_steps, method_from, scan_steps, steps_to_tolerance
from ._method import AbstractMethod, Bounds, EnergyFn


class Truncated(AbstractBackend):
    """Run up to `steps` inner steps; backpropagate through the last `k` only.

    The first `steps - k` steps run untaped (a `while_loop` on stop-gradient inputs that ends
    once every set has met the tolerance), so backward memory grows with `k`, not `steps`.
    The last `k` steps are taped and take no notice of the tolerance: every set, converged or
    not, takes them, so each set's gradient is that of `k` steps from where the prefix left it
    (near a fixed point, the `k`-term Neumann series of the implicit gradient). With
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
    method: AbstractMethod
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
        self.steps = check_steps(steps, "steps")
        self.k = check_steps(k, "k")
        if self.k > self.steps:
            raise ValueError(f"k must satisfy 1 <= k <= steps = {steps}, got k = {k}")
        self.method = method_from(method, lr, momentum, gtol, clip, default_gtol=1e-3)
        self.throw = throw

    def with_steps(self, steps: int) -> "Truncated":
        """With `steps` inner steps and `min(k, steps)` taped ones."""
        k = min(self.k, check_steps(steps, "steps"))
        return Truncated(steps, k, method=self.method, throw=self.throw)

    def _iterate(
        self,
        method: AbstractMethod,
        fn: EnergyFn,
        y0: Float[Array, "b m"],
        args: Any,
        bounds: Bounds | None,
    ):
        state = method.init(fn, y0, args, bounds)
        if self.k == self.steps:
            return scan_steps(method, fn, state, args, self.k)
        untaped_method, untaped_args = _stop_gradient((method, args))
        state, prefix = steps_to_tolerance(
            untaped_method, fn, _stop_gradient(state), untaped_args, self.steps - self.k
        )
        state = method.resume(state)  # every set takes the taped steps
        state, taped = scan_steps(method.without_tolerance(), fn, state, args, self.k)
        return state, {name: jnp.concatenate([prefix[name], taped[name]], -1) for name in taped}


def _stop_gradient(tree):
    """`lax.stop_gradient` on the floating-point arrays of a pytree; other leaves unchanged."""
    return jax.tree_util.tree_map(
        lambda leaf: jax.lax.stop_gradient(leaf) if eqx.is_inexact_array(leaf) else leaf, tree
    )

"""Phantom gradients: a converged forward, then a few damped steps that carry the gradient."""

from typing import Any, ClassVar

import equinox as eqx
from jaxtyping import Array, Float

from .._checks import check_int, check_unit_interval
from .._problem import Bounds, EnergyFn, Optimality
from ..methods import AbstractMethod, method_from
from ._abstract import AbstractBackend
from ._diagnosis import raise_if_not_converged
from ._loops import scan_steps, steps_to_tolerance, stop_gradient


class Phantom(AbstractBackend):
    """Forward to tolerance without a tape; the gradient through `k` damped steps from there.

    The forward runs the method to its tolerance (at most `steps` steps, a `while_loop`, as
    [`solvers.Implicit`][]); then, from the solution `y*` (held constant), `k` taped steps
    of the method restarted there (`init` at `y*`: no momentum), each damped,
    `y ← (1 - τ) y + τ step(y)`, give the returned value and its gradient (Geng et al.,
    2021, "phantom gradients"; TorchDEQ's `phantom_grad`). No linear solve; memory grows
    with `k`. The stats are the forward's (`num_steps`, the residual history and the
    auxiliary loss, which carries no gradient).

    What it approximates: for a gradient step `step(y) = y - α ∇E(y)` (Nesterov's first
    step from rest), `k` damped steps differentiate to `-τα Σ_{j<k} (I - ταH)^j ∂_θ∇E`,
    the `k`-term Neumann series of the implicit gradient `-H⁻¹ ∂_θ∇E` with step `τα`: with
    `k = 1` it is the Jacobian-free gradient `-τα ∂_θ∇E` (Fung et al., 2022), `H⁻¹`
    replaced by `τα I` (right in direction for well-conditioned `H`, not in scale); it tends
    to the implicit gradient as `k` grows. Nesterov's later steps add momentum to the
    series. For [`solvers.Newton`][] with a formed Hessian (`m ≤ dense_size`), one undamped
    step (`k = 1, τ = 1`) differentiates to the implicit gradient itself (one-step
    differentiation); beyond, its step is a few CG iterations, and so is the gradient's
    approximation of `H⁻¹`.

    !!! note
        As for Implicit, a set whose forward did not converge raises (`throw=True`) or is
        reported in `stats.converged`; lr and momentum get a gradient through the taped
        steps only.

    **Arguments:**

    - `steps`: the cap on forward steps (default 1000; the loop stops once every set has
      met its tolerance, so a generous cap costs nothing where the forward converges).
    - `k`: taped steps (default 1); `damping`: `τ` in `(0, 1]` (default 1).
    - `lr`, `momentum`, `gtol`: the [`solvers.Nesterov`][] forward; or `method`: any
      [`solvers.AbstractMethod`][]; with neither, the layer's own forward to tolerance.
    - `throw`: raise on divergence and non-convergence (default), or report in `stats`.
    """

    steps: int = eqx.field(static=True)
    k: int = eqx.field(static=True)
    damping: float = eqx.field(static=True)
    method: AbstractMethod | None
    throw: bool = eqx.field(static=True)
    runs_to_tolerance: ClassVar[bool] = True

    def __init__(
        self,
        steps: int = 1000,
        k: int = 1,
        damping: float = 1.0,
        lr: float | None = None,
        momentum: float | None = None,
        gtol: float | None = None,
        *,
        method: AbstractMethod | None = None,
        throw: bool = True,
    ):
        self.steps = check_int(steps, "steps")
        self.k = check_int(k, "k")
        check_unit_interval(damping, "damping")
        self.damping = float(damping)
        self.method = method_from(method, lr, momentum, gtol, None, to_tolerance=True)
        self.throw = throw

    def with_steps(self, steps: int) -> "Phantom":
        return Phantom(steps, self.k, self.damping, method=self.method, throw=self.throw)

    def _check_convergence(self, y: Array, converged: Array, history, method) -> Array:
        return raise_if_not_converged(
            y, ~converged, history, method, "Phantom's gradient steps start from a solution"
        )

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
        untaped_method, untaped_args = stop_gradient((method, args))
        state = untaped_method.init(fn, stop_gradient(y0), untaped_args, bounds)
        solved, prefix = steps_to_tolerance(untaped_method, fn, state, untaped_args, self.steps)
        damped = _Damped(method.without_tolerance(), self.damping)
        restart = damped.init(fn, stop_gradient(solved.y), args, None)
        state, _ = scan_steps(damped, fn, restart, args, self.k)
        # A set that diverged in the forward stays diverged: the taped steps start afresh.
        # The records are the forward's: the taped steps only carry the gradient.
        state = eqx.tree_at(lambda s: s.diverged, state, state.diverged | solved.diverged)
        return state, prefix


class _Damped(AbstractMethod):
    """`method`'s steps with the move of `y` scaled by `τ`: `y ← y + τ (step(y) - y)`."""

    method: AbstractMethod
    damping: float = eqx.field(static=True)

    @property
    def constrained(self) -> bool:
        return self.method.constrained

    @property
    def tolerance(self) -> float | None:
        return self.method.tolerance

    def default_tolerance(self, dtype: Any) -> float:
        return self.method.default_tolerance(dtype)

    def with_tolerance(self, tolerance: float) -> "_Damped":
        return _Damped(self.method.with_tolerance(tolerance), self.damping)

    def resume(self, state):
        return self.method.resume(state)

    def init(self, fn, y0, args, bounds):
        return self.method.init(fn, y0, args, bounds)

    def step(self, fn, state, args):
        new, rec = self.method.step(fn, state, args)
        if self.damping == 1:
            return new, rec
        y = state.y + self.damping * (new.y - state.y)
        return eqx.tree_at(lambda s: s.y, new, y), rec

    def converged(self, state, grad_max_norm):
        return self.method.converged(state, grad_max_norm)

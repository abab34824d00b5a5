"""Safeguarded Newton steps, one coordinate at a time, for separable convex energies."""

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .._problem import Bounds, EnergyFn, grad_and_energy, record
from ._abstract import AbstractMethod


class CoordinateNewtonState(eqx.Module):
    """`y` and the bracket `[lower, upper]` of each coordinate, `[b, m]`; `scale` `[b, m]`, the
    initial bracket width (0 where unbounded) that the step tolerance is relative to; `last`
    `[b, m]`, the size of the previous step; `settled` `[b, m]`, the coordinates that are done
    (they take no further step); `within` `[b, m]`, the coordinates whose last Newton step was
    within the tolerance (the dtype's default when stepping with 0); per set: `stopped`,
    `diverged`."""

    y: Float[Array, "b m"]
    lower: Float[Array, "b m"]
    upper: Float[Array, "b m"]
    scale: Float[Array, "b m"]
    last: Float[Array, "b m"]
    settled: Bool[Array, "b m"]
    within: Bool[Array, "b m"]
    stopped: Bool[Array, " b"]
    diverged: Bool[Array, " b"]


class CoordinateNewton(AbstractMethod):
    """Newton's method on each coordinate of `y`, kept inside a shrinking bracket.

    For energies that are a sum of convex one-dimensional terms, one per coordinate (every
    analytic energy of `eqx_agg.energies`), `∂E/∂y_d` is increasing in `y_d` alone, so each
    coordinate is a root-finding problem. A step evaluates the gradient and the diagonal of
    the Hessian at `y` (one forward-over-reverse pass), shrinks each coordinate's bracket to the
    side of `y` where the gradient changes sign, and takes the Newton step `y - g / h` when it
    lands inside the bracket, or bisects the bracket otherwise (Numerical Recipes' `rtsafe`).
    Quadratic energies (mean, sum, attention) are solved by the first step; smoothed absolute
    values (median, max) converge in a few bisections and Newton steps whatever the data's scale.

    The bracket comes from the energy (`bounds`); a coordinate without one starts at `y0` and
    takes plain Newton steps. The method starts at the middle of the bracket. A Newton step is
    taken only if it lands in the bracket and at least halves the previous step, so brackets
    shrink at least geometrically. A coordinate is done once its Newton step is below
    `rtol · (|y| + w)`, `w` being its initial bracket width (`|y|` where unbounded), or below
    `sqrt(rtol) · w` and no longer shrinking (the rounding noise of its gradient), or once its
    bracket is narrower than the tolerance: it then takes that last step and no more. A set
    stops when all its coordinates are done.

    **Arguments:**

    - `rtol`: relative step tolerance; `None` resolves to `4 eps` of the dtype; 0 stops
      only at an exact root.

    !!! warning
        Valid only for separable energies: the Hessian diagonal is read off one
        Hessian-vector product with a vector of ones. The layer refuses other energies.
    """

    separable_only: ClassVar[bool] = True
    slow_advice: ClassVar[str] = "raise the backend's steps"
    stall_advice: ClassVar[str] = (
        "check that the energy is convex in each coordinate of y, as CoordinateNewton needs"
    )
    rtol: float | None = eqx.field(default=None, static=True)

    def __check_init__(self):
        if self.rtol is not None and not 0 <= self.rtol < 1:
            raise ValueError(f"rtol must lie in [0, 1) or be None, got {self.rtol}")

    @property
    def constrained(self) -> bool:
        """False: the bracket contains the unconstrained minimiser."""
        return False

    @property
    def tolerance(self) -> float | None:
        return self.rtol

    def default_tolerance(self, dtype: Any) -> float:
        return 4 * float(np.finfo(dtype).eps)

    def with_tolerance(self, tolerance: float) -> "CoordinateNewton":
        return CoordinateNewton(tolerance)

    def resume(self, state: CoordinateNewtonState) -> CoordinateNewtonState:
        """Every coordinate steps again, inside the bracket it had narrowed."""
        settled = jnp.zeros_like(state.settled)
        return eqx.tree_at(lambda s: (s.stopped, s.settled), state, (state.diverged, settled))

    def init(
        self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any, bounds: Bounds | None
    ) -> CoordinateNewtonState:
        del fn, args
        if bounds is None:
            lower, upper = jnp.full_like(y0, -jnp.inf), jnp.full_like(y0, jnp.inf)
        else:
            lower, upper = (jnp.broadcast_to(b, y0.shape).astype(y0.dtype) for b in bounds)
        bounded = jnp.isfinite(lower) & jnp.isfinite(upper)
        y = jnp.where(bounded, 0.5 * (lower + upper), jnp.clip(y0, lower, upper))
        scale = jnp.where(bounded, upper - lower, 0)
        no = jnp.zeros(y0.shape[0], bool)
        last = jnp.where(bounded, scale, jnp.inf)
        none = jnp.zeros(y.shape, bool)
        return CoordinateNewtonState(y, lower, upper, scale, last, none, none, no, no)

    def step(
        self, fn: EnergyFn, state: CoordinateNewtonState, args: Any
    ) -> tuple[CoordinateNewtonState, dict[str, Array]]:
        if self.rtol is None:
            raise ValueError("call resolve(dtype) before stepping a CoordinateNewton")
        y = state.y
        (g, energy), (h, _) = jax.jvp(
            lambda y: grad_and_energy(fn, y, args), (y,), (jnp.ones_like(y),)
        )
        finite = jnp.all(jnp.isfinite(g) & jnp.isfinite(h), axis=-1)
        lower = jnp.where(g < 0, jnp.maximum(state.lower, y), state.lower)
        upper = jnp.where(g > 0, jnp.minimum(state.upper, y), state.upper)
        width = jnp.where(state.scale > 0, state.scale, jnp.abs(y))
        newton = y - g / jnp.where(h > 0, h, 1)
        proposed = jnp.abs(newton - y)

        def within(rtol):
            """The Newton step is below tolerance, or small and no longer shrinking (the
            rounding noise of the gradient), or the bracket has closed."""
            tolerance = rtol * (width + jnp.abs(y))
            noise = np.sqrt(rtol) * width + tolerance
            converged = (g == 0) | (proposed <= tolerance)
            converged = converged | ((proposed <= noise) & (proposed > 0.5 * state.last))
            return converged, converged | (upper - lower <= tolerance)

        converged, done = within(self.rtol)
        if self.rtol == 0:  # every step is taken (Truncated's and Phantom's taped steps)
            done = jnp.zeros_like(done)
        _, meets = within(self.rtol or self.default_tolerance(y.dtype))
        # rtsafe: Newton when it lands in the bracket and at least halves the previous step;
        # otherwise bisect, so the bracket shrinks at least geometrically.
        take = (h > 0) & (newton >= lower) & (newton <= upper) & (proposed <= 0.5 * state.last)
        bounded = jnp.isfinite(lower) & jnp.isfinite(upper)
        fallback = jnp.where(bounded, 0.5 * (lower + upper), y)
        # inside the bracket, while its derivative stays Newton's (the implicit one at a root)
        newton = newton + jax.lax.stop_gradient(jnp.clip(newton, lower, upper) - newton)
        new_y = jnp.where(converged | take, newton, fallback)
        size = jnp.abs(new_y - y)
        active = ~state.stopped & finite
        moves = active[:, None] & ~state.settled
        settled = state.settled | (moves & done)
        new = CoordinateNewtonState(
            y=jnp.where(moves, new_y, y),
            lower=lower,
            upper=upper,
            scale=state.scale,
            last=jnp.where(moves & ~done, size, state.last),
            settled=settled,
            within=jnp.where(moves, meets, state.within),
            stopped=state.stopped | ~finite | jnp.all(settled, axis=-1),
            diverged=state.diverged | (~state.stopped & ~finite),
        )
        return new, record(g, energy, active)

    def converged(self, state: CoordinateNewtonState, grad_max_norm: Float[Array, " b"]):
        """Every coordinate's last Newton step was within the tolerance."""
        del grad_max_norm
        # counted, not jnp.all: reduce_and has no differentiation rule under custom_root
        every = jnp.sum(state.within, axis=-1) == state.within.shape[-1]
        return every & ~state.diverged

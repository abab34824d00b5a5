"""A safeguarded per-set Newton method (Levenberg–Marquardt damping) for learned energies."""

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Bool, Float

from .._checks import check_int, check_non_negative
from .._problem import Bounds, EnergyFn, grad_and_energy, per_set, record
from ..linear import solve_per_set
from ._abstract import AbstractMethod

DEFAULT_TOLERANCE = {"float32": 1e-4, "float64": 1e-8}
"""`gtol=None` resolves to this tolerance on `max|∇_y E|`, as for [`solvers.Nesterov`][]."""

MIN_DAMPING = 1e-3
"""The damping a shortened or rejected step starts from, relative to the curvature scale."""

BACKTRACKING = (1.0, 0.25, 1 / 16)
"""The fractions of the Newton step tried, longest first (evaluated together)."""

CG_RTOL = 1e-3
"""Relative tolerance of the inexact Newton step when it is solved by CG."""


class NewtonState(eqx.Module):
    """`y` `[b, m]`; per set: `damping` (Levenberg–Marquardt's `λ`, relative to the curvature
    scale), `stopped`, `diverged`."""

    y: Float[Array, "b m"]
    damping: Float[Array, " b"]
    stopped: Bool[Array, " b"]
    diverged: Bool[Array, " b"]


class Newton(AbstractMethod):
    """Damped Newton steps, each set on its own, that never go uphill.

    A step evaluates the gradient `g` and the Hessian `H` of each set's energy at `y` (by
    Hessian-vector products), and proposes `d = -(H + μ I)⁻¹ g`: with `m ≤ dense_size` the
    Hessian is formed (`m` products, one batched evaluation) and solved exactly; beyond, `d`
    comes from at most `cg_steps` CG iterations on the products, per set (a truncated Newton
    step). The shift `μ` is
    Levenberg–Marquardt's damping `λ` times the curvature scale (the largest |eigenvalue|,
    or `‖Hg‖/‖g‖` under CG), plus what lifts a negative smallest eigenvalue to its absolute
    value: where the energy is not convex, the step is a descent step of a convexified
    model, and with a
    large `λ` it becomes a short gradient step. The step, or a quarter or a sixteenth of it
    (the three energies are evaluated together), is taken only if the energy does not rise
    (beyond rounding); a shortened step doubles `λ`, and when none is taken `λ` grows
    tenfold and the set stays. `λ` shrinks again when a full step lowers the energy as the
    model predicted, so near a strict minimum the steps are pure Newton steps and converge
    quadratically (truncated CG steps: linearly).

    A set stops once `max|∇_y E| < gtol` at its point, and returns that point, as
    [`solvers.Nesterov`][] does. A non-finite gradient or energy stops it as diverged.
    Differentiable under every backend: Unrolled differentiates the Newton steps (through
    the Hessian, so third derivatives of the potential), and one undamped Newton step from
    the solution, differentiated, is the implicit gradient.

    **Arguments:**

    - `gtol`: per-set tolerance on `max|∇_y E|`; `None` resolves to 1e-4 in float32, 1e-8
      in float64; 0 never stops (then `converged` means below that default).
    - `dense_size`: the largest `m` whose Hessian is formed and solved exactly (default 32).
    - `cg_steps`: CG iterations per Newton step beyond that (default 3: at the paper's
      counting size, m = 256, 3 reach float32's tolerance in 14 steps and 0.55 s, 10 in 7
      steps and 1.3 s, Nesterov in 305 steps and 1.3 s).
    """

    gtol: float | None = eqx.field(default=None, static=True)
    dense_size: int = eqx.field(default=32, static=True)
    cg_steps: int = eqx.field(default=3, static=True)
    slow_advice: ClassVar[str] = "raise the backend's steps"
    stall_advice: ClassVar[str] = (
        "the energy is not convex (or is flat) where the set stopped: raise the energy's "
        "regulariser, train with the auxiliary loss of eq. 5, or differentiate with Unrolled, "
        "which needs no converged forward"
    )

    def __check_init__(self):
        check_non_negative(self.gtol, "gtol", optional=True)
        check_int(self.dense_size, "dense_size", low=0)
        check_int(self.cg_steps, "cg_steps")

    @property
    def constrained(self) -> bool:
        return False

    @property
    def tolerance(self) -> float | None:
        return self.gtol

    def default_tolerance(self, dtype: Any) -> float:
        return DEFAULT_TOLERANCE[jnp.dtype(dtype).name]

    def with_tolerance(self, tolerance: float) -> "Newton":
        return Newton(tolerance, self.dense_size, self.cg_steps)

    def resume(self, state: NewtonState) -> NewtonState:
        return eqx.tree_at(lambda s: s.stopped, state, state.diverged)

    def init(
        self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any, bounds: Bounds | None
    ) -> NewtonState:
        del fn, args, bounds
        no = jnp.zeros(y0.shape[0], bool)
        return NewtonState(y0, jnp.zeros(y0.shape[0], y0.dtype), no, no)

    def step(
        self, fn: EnergyFn, state: NewtonState, args: Any
    ) -> tuple[NewtonState, dict[str, Array]]:
        if self.gtol is None:
            raise ValueError("call resolve(dtype) before stepping a Newton with gtol=None")
        y = state.y
        eps = jnp.finfo(y.dtype).eps
        (g, energy), linear = jax.linearize(lambda y: grad_and_energy(fn, y, args), y)
        hvp = lambda v: linear(v)[0]  # noqa: E731
        finite = jnp.all(jnp.isfinite(g), axis=-1) & jnp.isfinite(energy)
        if y.shape[1] <= self.dense_size:
            d, predicted = _dense_step(hvp, g, state.damping)
        else:
            d, predicted = _cg_step(hvp, g, state.damping, self.cg_steps)
        # Backtracking: the longest of the trial steps that does not raise the energy.
        rounding = 16 * eps * (jnp.abs(energy) + jnp.finfo(y.dtype).tiny)
        fractions = jnp.asarray(BACKTRACKING, y.dtype)
        trial_energies = jnp.stack([fn(y + a * d, args) for a in BACKTRACKING], axis=1)
        decreases = jnp.isfinite(trial_energies) & (
            energy[:, None] - trial_energies >= -rounding[:, None]
        )
        accept = jnp.any(decreases, axis=1)
        first = jnp.argmax(decreases, axis=1)
        fraction = jnp.where(accept, fractions[first], 0)
        change = energy - jnp.take_along_axis(trial_energies, first[:, None], axis=1)[:, 0]
        ratio = change / jnp.where(predicted > 0, predicted, 1)
        measured = jnp.abs(change) > rounding  # the ratio means something
        full = accept & (first == 0)
        damping = jnp.where(
            full & measured & (ratio > 0.75),
            state.damping / 4,
            jnp.where(full, state.damping, jnp.maximum(jnp.where(accept, 2, 10) * state.damping,
                                                       MIN_DAMPING)),
        )  # fmt: skip
        damping = jax.lax.stop_gradient(jnp.where(damping < 1e-6, 0, damping))
        trial = y + jax.lax.stop_gradient(fraction)[:, None] * d
        converging = ~state.stopped & finite & (jnp.max(jnp.abs(g), axis=-1) < self.gtol)
        active = ~state.stopped & finite & ~converging
        new = NewtonState(
            y=jnp.where(per_set(active & accept), trial, y),
            damping=jnp.where(active, damping, state.damping),
            stopped=state.stopped | ~finite | converging,
            diverged=state.diverged | (~state.stopped & ~finite),
        )
        return new, record(g, energy, active)

    def converged(self, state: NewtonState, grad_max_norm: Float[Array, " b"]):
        """`max|∇E| < gtol` at the returned point (the dtype's default when stepping with 0)."""
        gtol = self.gtol or DEFAULT_TOLERANCE[grad_max_norm.dtype.name]
        return (grad_max_norm < gtol) & ~state.diverged


def _dense_step(hvp, g: Float[Array, "b m"], damping: Float[Array, " b"]):
    """The damped Newton step from the formed Hessian, and the decrease it predicts."""
    b, m = g.shape
    columns = jax.vmap(lambda e: hvp(jnp.broadcast_to(e, (b, m))))(jnp.eye(m, dtype=g.dtype))
    hessian = jnp.transpose(columns, (1, 2, 0))
    hessian = 0.5 * (hessian + jnp.swapaxes(hessian, 1, 2))
    eigenvalues = jax.lax.stop_gradient(jnp.linalg.eigvalsh(hessian))
    scale = jnp.max(jnp.abs(eigenvalues), axis=-1)
    scale = jnp.where(scale > 0, scale, 1)
    floor = 100 * jnp.finfo(g.dtype).eps * scale
    smallest = eigenvalues[:, 0]
    # a negative curvature is mirrored (lifted to |λ_min|), a vanishing one to the floor
    lift = jnp.where(smallest < floor, jnp.maximum(floor, -smallest) - smallest, 0)
    shift = damping * scale + lift
    shifted = hessian + shift[:, None, None] * jnp.eye(m, dtype=g.dtype)
    d = -jnp.linalg.solve(shifted, g[..., None])[..., 0]
    d = jnp.where(jnp.all(jnp.isfinite(d), axis=-1, keepdims=True), d, 0)
    return d, -0.5 * jnp.sum(g * d, axis=-1)


def _cg_step(hvp, g: Float[Array, "b m"], damping: Float[Array, " b"], cg_steps: int):
    """The damped inexact Newton step by per-set CG on Hessian-vector products (a gradient
    step where CG does not find a descent direction), and the decrease it predicts."""
    norm = jnp.linalg.norm(g, axis=-1)
    safe = jnp.where(norm > 0, norm, 1)
    scale = jax.lax.stop_gradient(jnp.linalg.norm(hvp(g), axis=-1) / safe)
    scale = jnp.where(scale > 0, scale, 1)
    shift = (damping + 100 * jnp.finfo(g.dtype).eps) * scale

    def shifted(v):
        return hvp(v) + shift[:, None] * v

    solver = lx.CG(rtol=CG_RTOL, atol=CG_RTOL, max_steps=cg_steps)
    d, _ = solve_per_set(shifted, -g, solver)  # a partial CG solve is still a descent step
    descent = jnp.all(jnp.isfinite(d), axis=-1) & (jnp.sum(g * d, axis=-1) < 0)
    fallback = -g / (scale * (1 + damping))[:, None]
    d = jnp.where(per_set(descent), d, fallback)
    predicted = -(jnp.sum(g * d, axis=-1) + 0.5 * jnp.sum(d * shifted(d), axis=-1))
    return d, predicted

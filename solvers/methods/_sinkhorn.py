"""The log-domain Sinkhorn forward method for entropic transport problems."""

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from .._checks import check_non_negative
from .._entropic_ot import EntropicOT
from .._problem import Bounds, grad_and_energy, record
from ._abstract import AbstractMethod

DEFAULT_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
"""`tol=None` resolves to this marginal violation, relative to the largest marginal mass."""


class SinkhornState(eqx.Module):
    """`y = concat[f, g]`, `[b, n + p]`; per problem: `scale` (the largest marginal mass, what
    the tolerance is relative to), `stopped`, `diverged`."""

    y: Float[Array, "b q"]
    scale: Float[Array, " b"]
    stopped: Bool[Array, " b"]
    diverged: Bool[Array, " b"]


class Sinkhorn(AbstractMethod):
    """Sinkhorn's alternating scaling updates, in the log domain, for [`solvers.EntropicOT`][].

    A step updates `f` given `g`, then `g` given `f` (`solvers.sinkhorn_sweep`):
    for a balanced side the exact marginal match
    `f_i = ε log r_i - ε LSE_j((g_j - C_ij)/ε)`; for a side with a KL penalty the same
    update damped by `ρ / (ρ + ε)` (the unbalanced Sinkhorn of Chizat et al.; ROTP's
    `a2 / (a2 + a1)`). When a side is unbalanced, the step then moves the potentials to the
    best `(f + λ, g - λ)` (closed form; the translation-invariant Sinkhorn of Séjourné et
    al., 2022): the damped updates alone converge in the total mass at the rate
    `ρ / (ρ + ε)` per step, hopelessly slowly for `ρ ≫ ε`. Each update is an exact block
    minimisation of the problem's dual energy, so the optimality condition is the energy's
    gradient: the marginal violation.

    A problem stops once its largest marginal violation is below `tol` times its largest
    marginal mass; `converged` checks the same at the returned potentials. Every problem
    needs at least one unmasked row (an empty set has no plan; the layers handle it apart).

    **Arguments:**

    - `tol`: relative marginal violation; `None` resolves to 1e-5 in float32, 1e-10 in
      float64; 0 never stops.

    Solve with `backend.solve(solvers.dual_energy, y0, problem,
    optimality=solvers.transport_optimality)`, `problem` an [`solvers.EntropicOT`][] and
    `y0` `[b, n + p]` (zeros): the optimality condition pins the potentials' gauge, without
    which Implicit's linear system is singular (and its solve fails loudly).
    """

    tol: float | None = eqx.field(default=None, static=True)
    transport_only: ClassVar[bool] = True
    slow_advice: ClassVar[str] = (
        "raise the backend's steps: Sinkhorn needs more iterations as eps shrinks"
    )
    stall_advice: ClassVar[str] = (
        "raise the layer's eps, or loosen Sinkhorn(tol=...); in float32 a tol below 1e-6 "
        "is under rounding"
    )

    def __check_init__(self):
        check_non_negative(self.tol, "tol", optional=True)

    @property
    def constrained(self) -> bool:
        return False

    @property
    def tolerance(self) -> float | None:
        return self.tol

    def default_tolerance(self, dtype: Any) -> float:
        return DEFAULT_TOLERANCE[jnp.dtype(dtype).name]

    def with_tolerance(self, tolerance: float) -> "Sinkhorn":
        return Sinkhorn(tolerance)

    def resume(self, state: SinkhornState) -> SinkhornState:
        return eqx.tree_at(lambda s: s.stopped, state, state.diverged)

    def init(self, fn, y0: Float[Array, "b q"], args: EntropicOT, bounds: Bounds | None):
        """Starts from `g = g0` and the `f` that matches the rows to it, so the plan is
        bounded from the first evaluation (`exp(-C/ε)` alone can overflow)."""
        del fn, bounds
        problem = _checked(args)
        _, g = problem.split(y0)
        f = _update(problem, g, problem.cost, problem.row_mass, problem.row_penalty, axis=2)
        f = jnp.where(problem.row_mask, f, 0)
        no = jnp.zeros(y0.shape[0], bool)
        return SinkhornState(jnp.concatenate([f, g], axis=1), problem.mass_scale(), no, no)

    def step(self, fn, state: SinkhornState, args: EntropicOT):
        if self.tol is None:
            raise ValueError("call resolve(dtype) before stepping a Sinkhorn with tol=None")
        problem = args
        grad, energy = grad_and_energy(fn, state.y, args)
        y = sinkhorn_sweep(problem, state.y)
        violation = jnp.max(jnp.abs(grad), axis=-1)
        finite = jnp.all(jnp.isfinite(y), axis=-1) & jnp.isfinite(violation)
        converging = ~state.stopped & (violation < self.tol * state.scale)
        active = ~state.stopped & finite & ~converging
        new = SinkhornState(
            y=jnp.where(active[:, None], y, state.y),
            scale=state.scale,
            stopped=state.stopped | converging | ~finite,
            diverged=state.diverged | (~state.stopped & ~finite),
        )
        return new, record(grad, energy, active)

    def converged(self, state: SinkhornState, grad_max_norm: Float[Array, " b"]):
        """The marginal violation at the returned potentials is below the tolerance (the
        dtype's default when stepping with 0) times the largest marginal mass."""
        tol = self.tol or self.default_tolerance(grad_max_norm.dtype)
        return (grad_max_norm < tol * state.scale) & ~state.diverged


def sinkhorn_sweep(problem: EntropicOT, y: Float[Array, "b q"]) -> Float[Array, "b q"]:
    """One Sinkhorn iteration on the potentials `y = concat[f, g]`: `f` given `g`, then `g`
    given `f`, then (unbalanced) the best translation. A fixed-point map whose fixed points
    are the optimal potentials."""
    _, g = problem.split(y)
    f = _update(problem, g, problem.cost, problem.row_mass, problem.row_penalty, axis=2)
    f = jnp.where(problem.row_mask, f, 0)
    cost_t = jnp.swapaxes(problem.cost, 1, 2)
    g = _update(problem, f, cost_t, problem.col_mass, problem.col_penalty, axis=2,
                mask=problem.row_mask)  # fmt: skip
    if problem.row_penalty is not None or problem.col_penalty is not None:
        f, g = _translate(problem, f, g)
    return jnp.concatenate([f, g], axis=1)


def _checked(args: Any) -> EntropicOT:
    if not isinstance(args, EntropicOT):
        raise TypeError(
            f"Sinkhorn solves solvers.EntropicOT problems (the transport layers OTKE and ROTP), "
            f"got args of type {type(args).__name__}: use another forward method for an energy"
        )
    return args


def _update(problem: EntropicOT, other, cost, mass, rho, axis: int, mask=None):
    """One side's potential given the other's: `τ ε (log m - LSE((other - C)/ε))`, with
    `τ = 1` (balanced) or `ρ / (ρ + ε)`."""
    logits = (other[:, None, :] - cost) / problem.eps
    if mask is not None:
        logits = jnp.where(mask[:, None, :], logits, -jnp.inf)
    lse = jax.scipy.special.logsumexp(logits, axis=axis)
    log_mass = jnp.log(jnp.where(mass > 0, mass, 1))
    update = problem.eps * (log_mass - lse)
    if rho is None:
        return update
    return rho / (rho + problem.eps) * update


def _translate(problem: EntropicOT, f, g):
    """`(f + λ, g - λ)` with `λ` minimising the dual energy along that line (the plan does
    not change; only the marginal penalties do)."""
    mask = problem.row_mask

    def log_weight(potential, mass, rho, where=None):
        """`log Σ m e^{-φ/ρ}`, or `log Σ m` for a balanced side (`ρ = ∞`)."""
        logits = jnp.log(jnp.where(mass > 0, mass, 1)) - (0 if rho is None else potential / rho)
        keep = mass > 0 if where is None else where & (mass > 0)
        return jax.scipy.special.logsumexp(jnp.where(keep, logits, -jnp.inf), axis=-1)

    rows = log_weight(f, problem.row_mass, problem.row_penalty, mask)
    cols = log_weight(g, problem.col_mass, problem.col_penalty)
    inverse = [0 if rho is None else 1 / rho for rho in (problem.row_penalty, problem.col_penalty)]
    shift = (rows - cols) / (inverse[0] + inverse[1])
    return jnp.where(mask, f + shift[:, None], 0), g - shift[:, None]

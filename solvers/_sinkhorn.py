"""Entropic optimal transport: the problem, as an energy of its dual potentials, and the
log-domain Sinkhorn forward method."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ._method import AbstractMethod, Bounds, grad_and_energy, record

DEFAULT_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
"""`tol=None` resolves to this marginal violation, relative to the largest marginal mass."""


class EntropicOT(eqx.Module):
    """A batch of `b` entropic transport problems between `n` rows and `p` columns:

    `min_P <C, P> + ε Σ P (log P - 1) + ρ_r KL(P 1 ‖ r) + ρ_c KL(Pᵀ 1 ‖ c)`,

    balanced on a side whose `ρ` is None (`P 1 = r` exactly, or `Pᵀ 1 = c`). Rows where
    `row_mask` is False carry no mass and get no gradient.

    Its solution is read off the dual potentials `f [b, n]`, `g [b, p]`:
    `P_ij = exp((f_i + g_j - C_ij) / ε)`. A backend sees the problem through
    [`solvers.dual_energy`][] (`fn`) with the problem as `args`: a convex function of
    `y = concat[f, g]` whose gradient is the marginal violation, so every backend applies
    unchanged.

    **Arguments:**

    - `cost`: `C`, `[b, n, p]`.
    - `row_mass`, `col_mass`: `r [b, n]` and `c [b, p]`, non-negative.
    - `row_mask`: `[b, n]`; `eps`: `ε > 0`, a scalar array (learnable).
    - `row_penalty`, `col_penalty`: `ρ_r`, `ρ_c`, scalar arrays, or None for a balanced side.
    """

    cost: Float[Array, "b n p"]
    row_mass: Float[Array, "b n"]
    col_mass: Float[Array, "b p"]
    row_mask: Bool[Array, "b n"]
    eps: Float[Array, ""]
    row_penalty: Float[Array, ""] | None = None
    col_penalty: Float[Array, ""] | None = None

    @property
    def sizes(self) -> tuple[int, int]:
        return self.cost.shape[1], self.cost.shape[2]

    def split(self, y: Float[Array, "b q"]) -> tuple[Float[Array, "b n"], Float[Array, "b p"]]:
        """`(f, g)` from `y = concat[f, g]`."""
        n, _ = self.sizes
        return y[:, :n], y[:, n:]

    def log_plan(self, f: Float[Array, "b n"], g: Float[Array, "b p"]) -> Float[Array, "b n p"]:
        """`log P`, with `-inf` on masked rows."""
        logits = (f[:, :, None] + g[:, None, :] - self.cost) / self.eps
        return jnp.where(self.row_mask[:, :, None], logits, -jnp.inf)

    def plan(self, y: Float[Array, "b q"]) -> Float[Array, "b n p"]:
        """The transport plan `P` of the dual potentials `y = concat[f, g]`."""
        return jnp.exp(self.log_plan(*self.split(y)))


def dual_energy(y: Float[Array, "b q"], problem: EntropicOT) -> Float[Array, " b"]:
    """The negative dual objective of each problem of `problem` at `y = concat[f, g]` (the
    `EnergyFn` a backend minimises with [`solvers.Sinkhorn`][]; `problem` is its `args`).
    It is convex, minimised by the optimal potentials, and its gradient is the marginal
    violation `(P 1 - r', Pᵀ 1 - c')`, with `r' = r` on a balanced side and `r e^{-f/ρ}`
    otherwise."""
    f, g = problem.split(y)
    f = jnp.where(problem.row_mask, f, 0)
    mass = jnp.sum(jnp.exp(problem.log_plan(f, g)), axis=(1, 2))
    rows = _penalty(f, problem.row_mass, problem.row_penalty)
    return problem.eps * mass + rows + _penalty(g, problem.col_mass, problem.col_penalty)


def _penalty(potential, mass, rho):
    """The conjugate of a marginal term: `-<m, f>` if balanced, else `ρ <m, e^{-f/ρ} - 1>`."""
    if rho is None:
        return -jnp.sum(mass * potential, axis=-1)
    return rho * jnp.sum(mass * jnp.expm1(-potential / rho), axis=-1)


class SinkhornState(eqx.Module):
    """`y = concat[f, g]`, `[b, n + p]`; per problem: `stopped`, `diverged`."""

    y: Float[Array, "b q"]
    stopped: Bool[Array, " b"]
    diverged: Bool[Array, " b"]


class Sinkhorn(AbstractMethod):
    """Sinkhorn's alternating scaling updates, in the log domain, for [`solvers.EntropicOT`][].

    A step updates `f` given `g`, then `g` given `f`: for a balanced side the exact
    marginal match `f_i = ε log r_i - ε LSE_j((g_j - C_ij)/ε)`; for a side with a KL
    penalty the same update damped by `ρ / (ρ + ε)` (the unbalanced Sinkhorn of Chizat et
    al.; ROTP's `a2 / (a2 + a1)`). When a side is unbalanced, the step then moves the
    potentials to the best `(f + λ, g - λ)` (closed form; the translation-invariant Sinkhorn
    of Séjourné et al., 2022): the damped updates alone converge in the total mass at the
    rate `ρ / (ρ + ε)` per step, hopelessly slowly for `ρ ≫ ε`. Each update is an exact
    block minimisation of the problem's dual energy, so the optimality condition is the
    energy's gradient: the marginal violation, which the Implicit backend differentiates.

    A problem stops once its largest marginal violation is below `tol` times its largest
    marginal mass: it is then `converged`. Every problem needs at least one unmasked row
    (an empty set has no plan; the layers handle it apart).

    **Arguments:**

    - `tol`: relative marginal violation; `None` resolves to 1e-5 in float32, 1e-10 in
      float64; 0 never stops.

    Solve with `backend.solve(solvers.dual_energy, y0, problem)`, `problem` an
    [`solvers.EntropicOT`][] and `y0` `[b, n + p]` (zeros).
    """

    tol: float | None = eqx.field(default=None, static=True)

    def __check_init__(self):
        if self.tol is not None and not self.tol >= 0:
            raise ValueError(f"tol must be non-negative or None, got {self.tol}")

    def resolve(self, dtype: Any) -> "Sinkhorn":
        if self.tol is not None:
            return self
        return Sinkhorn(DEFAULT_TOLERANCE[jnp.dtype(dtype).name])

    def without_tolerance(self) -> "Sinkhorn":
        return Sinkhorn(0.0)

    def optimality(self, fn, y: Float[Array, "b q"], args: EntropicOT) -> Float[Array, "b q"]:
        """The marginal violation `∇_y E`, made a well-posed condition for the implicit
        function theorem: a masked row's potential is pinned (`f_i = const`), and when both
        sides are balanced the gauge `(f + c, g - c)`, along which `E` is flat, is pinned too.
        Both terms vanish at the solution and only remove the Jacobian's null space."""
        problem = args
        grad = jax.grad(lambda y: jnp.sum(fn(y, problem)))(y)
        moved = y - jax.lax.stop_gradient(y)  # zero, with derivative the identity
        n, p = problem.sizes
        rows = jnp.concatenate([problem.row_mask, jnp.zeros((y.shape[0], p), bool)], axis=1)
        pinned = jnp.concatenate([~problem.row_mask, jnp.zeros((y.shape[0], p), bool)], axis=1)
        grad = grad + jnp.where(pinned, moved, 0)
        if problem.row_penalty is None and problem.col_penalty is None:
            gauge = jnp.where(rows, 1.0, 0.0) - jnp.pad(jnp.ones((y.shape[0], p)), ((0, 0), (n, 0)))
            scale = jnp.max(problem.col_mass, axis=-1, keepdims=True) / problem.eps
            along = jnp.sum(gauge * moved, axis=-1, keepdims=True) / jnp.sum(
                gauge**2, axis=-1, keepdims=True
            )
            grad = grad + scale * along * gauge
        return grad

    def init(self, fn, y0: Float[Array, "b q"], args: EntropicOT, bounds: Bounds | None):
        """Starts from `g = g0` and the `f` that matches the rows to it, so the plan is
        bounded from the first evaluation (`exp(-C/ε)` alone can overflow)."""
        del fn, bounds
        problem = args
        _, g = problem.split(y0)
        f = _update(problem, g, problem.cost, problem.row_mass, problem.row_penalty, axis=2)
        f = jnp.where(problem.row_mask, f, 0)
        no = jnp.zeros(y0.shape[0], bool)
        return SinkhornState(jnp.concatenate([f, g], axis=1), no, no)

    def step(self, fn, state: SinkhornState, args: EntropicOT):
        if self.tol is None:
            raise ValueError("call resolve(dtype) before stepping a Sinkhorn with tol=None")
        problem = args
        grad, energy = grad_and_energy(fn, state.y, args)
        f, g = problem.split(state.y)
        f = _update(problem, g, problem.cost, problem.row_mass, problem.row_penalty, axis=2)
        f = jnp.where(problem.row_mask, f, 0)
        cost_t = jnp.swapaxes(problem.cost, 1, 2)
        g = _update(problem, f, cost_t, problem.col_mass, problem.col_penalty, axis=2,
                    mask=problem.row_mask)  # fmt: skip
        if problem.row_penalty is not None or problem.col_penalty is not None:
            f, g = _translate(problem, f, g)
        y = jnp.concatenate([f, g], axis=1)
        scale = jnp.maximum(jnp.max(problem.row_mass, -1), jnp.max(problem.col_mass, -1))
        violation = jnp.max(jnp.abs(grad), axis=-1)
        finite = jnp.all(jnp.isfinite(y), axis=-1) & jnp.isfinite(violation)
        converging = ~state.stopped & (violation < self.tol * scale)
        active = ~state.stopped & finite & ~converging
        new = SinkhornState(
            y=jnp.where(active[:, None], y, state.y),
            stopped=state.stopped | converging | ~finite,
            diverged=state.diverged | (~state.stopped & ~finite),
        )
        return new, record(grad, energy, active)

    def converged(self, state: SinkhornState, grad_max_norm: Float[Array, " b"]):
        del grad_max_norm
        return state.stopped & ~state.diverged


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

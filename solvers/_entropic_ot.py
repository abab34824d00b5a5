"""Entropic optimal transport as an inner problem: an energy of the dual potentials, and the
optimality condition Implicit differentiates."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ._problem import grad_and_energy


class EntropicOT(eqx.Module):
    """A batch of `b` entropic transport problems between `n` rows and `p` columns:

    `min_P <C, P> + ε Σ P (log P - 1) + ρ_r KL(P 1 ‖ r) + ρ_c KL(Pᵀ 1 ‖ c)`,

    balanced on a side whose `ρ` is None (`P 1 = r` exactly, or `Pᵀ 1 = c`). Rows where
    `row_mask` is False carry no mass and get no gradient.

    Its solution is read off the dual potentials `f [b, n]`, `g [b, p]`:
    `P_ij = exp((f_i + g_j - C_ij) / ε)`. A backend sees the problem through
    [`solvers.dual_energy`][] (`fn`) with the problem as `args`: a convex function of
    `y = concat[f, g]` whose gradient is the marginal violation, so every backend and every
    energy method applies unchanged; Implicit differentiates
    [`solvers.transport_optimality`][] (pass it as `optimality=`).

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

    def mass_scale(self) -> Float[Array, " b"]:
        """Each problem's largest marginal mass: the marginal violation is relative to it."""
        return jnp.maximum(jnp.max(self.row_mass, -1), jnp.max(self.col_mass, -1))


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


def transport_optimality(y: Float[Array, "b q"], problem: EntropicOT) -> Float[Array, "b q"]:
    """The optimality condition of [`solvers.dual_energy`][] that Implicit differentiates:
    the marginal violation `∇_y E`, made well-posed for the implicit function theorem. A
    masked row's potential is pinned (`f_i = const`), and when both sides are balanced the
    gauge `(f + c, g - c)`, along which `E` is flat, is pinned too. Both terms vanish at the
    solution and only remove the Jacobian's null space, whatever the forward method."""
    grad = grad_and_energy(dual_energy, y, problem)[0]
    moved = y - jax.lax.stop_gradient(y)  # zero, with derivative the identity
    n, p = problem.sizes
    b = y.shape[0]
    rows = jnp.concatenate([problem.row_mask, jnp.zeros((b, p), bool)], axis=1)
    pinned = jnp.concatenate([~problem.row_mask, jnp.zeros((b, p), bool)], axis=1)
    grad = grad + jnp.where(pinned, moved, 0)
    if problem.row_penalty is None and problem.col_penalty is None:
        gauge = jnp.where(rows, 1.0, 0.0) - jnp.pad(jnp.ones((b, p)), ((0, 0), (n, 0)))
        scale = jnp.max(problem.col_mass, axis=-1, keepdims=True) / problem.eps
        along = jnp.sum(gauge * moved, axis=-1, keepdims=True) / jnp.sum(
            gauge**2, axis=-1, keepdims=True
        )
        grad = grad + scale * along * gauge
    return grad

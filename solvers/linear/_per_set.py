"""Linear solves of `b` independent systems on lineax, each set to its own tolerance.

The systems of the `b` sets are independent (the optimality condition is row-separable, so its
Jacobian is block-diagonal), but the operator acts on all of them at once (`[b, n] -> [b, n]`,
block by block), which is what an energy evaluated on every set together provides. Each
set's system is handed to lineax as its own operator inside a `vmap` over the sets: the set's
operator gathers the vectors of every set (`all_gather` over the vmapped axis: under `vmap`
one batched product serves every set) and keeps its own row. So every set runs lineax's
solver with its own step sizes, stopping test and iteration count, and one product of the
batched operator costs what one product of all blocks costs.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Bool, Float, Int

Matvec = Callable[[Float[Array, "b n"]], Float[Array, "b n"]]

_AXIS = "sets"


class LinearSolveStats(eqx.Module):
    """Per-set diagnostics of one backward linear solve (all `[b]`).

    - `residual`: `max|A x - rhs| / max|rhs|` (0 for a zero right-hand side), the norm
      lineax's tolerances are stated in.
    - `iterations`: iterations the set took (the system size for a direct solve).
    - `failed`: the solve broke down or did not reach its tolerance: a non-finite result,
      lineax's own failure (the iteration cap, a singular matrix), a residual above 10× the
      solver's tolerance, or, under CG, non-positive curvature along the solution
      (`xᵀ A x = xᵀ rhs ≤ 0`: the Hessian is not positive definite, so the forward did not
      stop at a strict minimum).
    """

    residual: Float[Array, " b"]
    iterations: Int[Array, " b"]
    failed: Bool[Array, " b"]


def solve_per_set(
    matvec: Matvec,
    rhs: Float[Array, "b n"],
    solver: lx.AbstractLinearSolver,
    *,
    symmetric: bool = True,
    preconditioner: Float[Array, "b n"] | None = None,
) -> tuple[Float[Array, "b n"], LinearSolveStats]:
    """Solve `A x = rhs` for each of the `b` blocks of `matvec`, with lineax's `solver`.

    Each set's right-hand side is scaled to unit max-norm first, so the solver's `rtol` and
    `atol` are relative to that set alone: a set whose right-hand side is 1e-8 is solved as
    accurately as one whose is 1e8. With `symmetric` (the default: a Hessian) the blocks are
    tagged symmetric positive semi-definite (a minimum), as CG needs, and diagonal for
    `lx.Diagonal` (separable energies).

    Under an outer `vmap` (a batch of layers, `jax.jacrev` of a loss through Implicit), the
    outer axis is merged into the sets: every set of every batch element is one more
    independent system. In reverse mode the solve differentiates as `A⁻¹ rhs` would (as
    lineax's solves do), by one more solve with the transposed operator and the same
    `solver`: as accurate as the forward's (a 3-iteration CG gives a 3-iteration adjoint),
    which is what a differentiated step of a truncated-CG Newton needs (Phantom beyond
    `dense_size`). The stats carry no gradient, the preconditioner none either, and forward
    mode (`jax.jvp`, `jax.jacfwd`) is not supported.

    **Arguments:**

    - `matvec`: the block-diagonal operator, `[b, n] -> [b, n]`, linear.
    - `rhs`: `[b, n]`.
    - `solver`: a lineax solver (`lx.CG(...)`, `lx.GMRES(...)`, `lx.LU()`, ...).
    - `symmetric`: whether every block is symmetric.
    - `preconditioner`: optional `[b, n]`, a positive diagonal to precondition with (its
      inverse is applied), for the solvers that take one (CG, GMRES, BiCGStab).

    **Returns:** `x: [b, n]` and a [`solvers.LinearSolveStats`][].
    """
    # custom_vmap takes arrays only: the operator's closed-over arrays travel as arguments.
    dynamic, static = eqx.partition(eqx.filter_closure_convert(matvec, rhs), eqx.is_array)

    @jax.custom_batching.custom_vmap
    def solve(dynamic, rhs, preconditioner):
        return _solve_blocks(eqx.combine(dynamic, static), rhs, solver, symmetric, preconditioner)

    @solve.def_vmap
    def merged(axis_size, in_batched, dynamic, rhs, preconditioner):
        """An outer batch of `B` problems of `b` sets is one problem of `B·b` sets."""
        axes = jax.tree_util.tree_map(lambda batched: 0 if batched else None, in_batched[0])
        rhs = rhs if in_batched[1] else jnp.broadcast_to(rhs, (axis_size, *rhs.shape))
        outer, b, n = rhs.shape

        def merged_matvec(v):
            blocks = jax.vmap(lambda d, v: eqx.combine(d, static)(v), in_axes=(axes, 0))(
                dynamic, v.reshape(outer, b, n)
            )
            return blocks.reshape(outer * b, n)

        if preconditioner is not None:
            if not in_batched[2]:
                preconditioner = jnp.broadcast_to(preconditioner, (axis_size, b, n))
            preconditioner = preconditioner.reshape(outer * b, n)
        x, stats = solve_per_set(
            merged_matvec,
            rhs.reshape(outer * b, n),
            solver,
            symmetric=symmetric,
            preconditioner=preconditioner,
        )
        unmerge = lambda a: a.reshape(outer, b, *a.shape[1:])  # noqa: E731
        out = jax.tree_util.tree_map(unmerge, (x, stats))
        return out, jax.tree_util.tree_map(lambda _: True, out)

    @eqx.filter_custom_vjp
    def differentiable(operator_and_rhs, preconditioner):
        return solve(*operator_and_rhs, preconditioner)

    @differentiable.def_fwd
    def forward(perturbed, operator_and_rhs, preconditioner):
        del perturbed
        x, stats = solve(*operator_and_rhs, preconditioner)
        return (x, stats), x

    @differentiable.def_bwd
    def backward(x, cotangent, perturbed, operator_and_rhs, preconditioner):
        """`rhs̄ = A⁻ᵀ x̄` and `Ā = -rhs̄ xᵀ`, the latter through the operator's arrays."""
        del perturbed
        dynamic, _ = operator_and_rhs
        x_bar = jnp.zeros_like(x) if cotangent[0] is None else cotangent[0]  # None: stats only
        operator = eqx.combine(dynamic, static)
        if symmetric:
            adjoint = operator
        else:
            transpose = jax.linear_transpose(operator, x)
            adjoint = lambda v: transpose(v)[0]  # noqa: E731
        rhs_bar, _ = solve_per_set(
            adjoint, x_bar, solver, symmetric=symmetric, preconditioner=preconditioner
        )
        # a set whose solution is not finite (which Newton replaces) would spread NaN to Ā
        x = jnp.where(jnp.all(jnp.isfinite(x), axis=-1, keepdims=True), x, 0)
        _, pullback = jax.vjp(lambda d: eqx.combine(d, static)(x), dynamic)
        (dynamic_bar,) = pullback(-rhs_bar)
        return dynamic_bar, rhs_bar

    if preconditioner is not None:  # it changes the iterations, not the solution
        preconditioner = jax.lax.stop_gradient(preconditioner)
    return differentiable((dynamic, rhs), preconditioner)


def _solve_blocks(
    matvec: Matvec,
    rhs: Float[Array, "b n"],
    solver: lx.AbstractLinearSolver,
    symmetric: bool,
    preconditioner: Float[Array, "b n"] | None,
) -> tuple[Float[Array, "b n"], LinearSolveStats]:
    """`solve_per_set` without an outer batch: a `vmap` over the sets, each set's operator
    gathering every set's vector."""
    scale = jnp.max(jnp.abs(rhs), axis=-1, keepdims=True)
    zero = ~(scale > 0)
    unit = rhs / jnp.where(zero, 1, scale)
    tags = [lx.symmetric_tag, lx.positive_semidefinite_tag] if symmetric else []
    if isinstance(solver, lx.Diagonal):
        tags.append(lx.diagonal_tag)
    n = rhs.shape[1]

    def one(vector, inverse_diagonal):
        def mv(v):
            every = jax.lax.all_gather(v, _AXIS)  # [b, n]: one product serves every set
            return matvec(every)[jax.lax.axis_index(_AXIS)]

        structure = jax.ShapeDtypeStruct((n,), vector.dtype)
        operator = lx.FunctionLinearOperator(mv, structure, tags)
        options = {}
        if inverse_diagonal is not None:
            options["preconditioner"] = lx.TaggedLinearOperator(
                lx.DiagonalLinearOperator(inverse_diagonal), lx.positive_semidefinite_tag
            )
        sol = lx.linear_solve(operator, vector, solver, options=options, throw=False)
        steps = sol.stats.get("num_steps", n)
        return sol.value, jnp.asarray(steps, jnp.int32), sol.result != lx.RESULTS.successful

    inverse = (
        None if preconditioner is None else 1 / jnp.where(preconditioner > 0, preconditioner, 1)
    )
    x, iterations, lineax_failed = jax.vmap(one, axis_name=_AXIS)(unit, inverse)
    x = jnp.where(zero, 0, x)
    product = matvec(x)
    residual = jnp.max(jnp.abs(product - unit), axis=-1)
    failed = lineax_failed | ~jnp.all(jnp.isfinite(x), axis=-1)
    tolerance = _tolerance(solver)
    if tolerance is not None:
        failed = failed | ~(residual <= 10 * tolerance)
    if _is_cg(solver):
        failed = failed | (~zero[:, 0] & ~(jnp.sum(x * unit, axis=-1) > 0))
    return x * scale, LinearSolveStats(jnp.where(zero[:, 0], 0, residual), iterations, failed)


def _tolerance(solver: lx.AbstractLinearSolver) -> float | None:
    """The residual an iterative solver promises (`atol + rtol` on a unit right-hand side);
    None for a direct one (its residual is rounding) and for the normal equations (whose
    tolerance is on `AᵀA`, so lineax's own verdict stands)."""
    if hasattr(solver, "rtol") and hasattr(solver, "atol"):
        return float(solver.atol) + float(solver.rtol)
    return None


def _is_cg(solver: lx.AbstractLinearSolver) -> bool:
    return isinstance(solver, lx.CG)

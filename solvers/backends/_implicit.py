"""Implicit differentiation through the optimality condition (jaxopt's `custom_root`)."""

from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxopt import implicit_diff
from jaxtyping import Array, Float

from .._checks import check_int, check_non_negative
from .._problem import Bounds, EnergyFn, Optimality, stationarity
from ..linear import LinearSolveStats, check_linear_solver, from_shortcut, solve_per_set
from ..methods import AbstractMethod, method_from
from ._abstract import AbstractBackend
from ._diagnosis import THROW_FALSE, raise_if_not_converged
from ._loops import steps_to_tolerance

BACKWARD_FAILED = (
    "Implicit's backward linear solve failed for at least one set: a non-finite result, a "
    "Hessian that is not positive definite under CG (the forward stopped at a saddle or a "
    "maximum), or the iteration cap reached before the tolerance. Use "
    "linear_solver='gmres' or 'lu' (indefinite or singular Hessians), add ridge=..., raise "
    "maxiter, add preconditioner='jacobi', or let the forward converge further. With "
    "throw=False such sets keep the solver's last iterate (an approximate gradient; zero if "
    "not finite), and report= shows them. " + THROW_FALSE
)
PRECONDITIONERS = (None, "jacobi")


class Implicit(AbstractBackend):
    """Forward to tolerance without a tape; backward by the implicit function theorem.

    The forward runs the method in a `while_loop` that stops each set at its tolerance
    (at most `steps` steps), so memory does not depend on `steps` and converged sets cost
    nothing more. The backward solves `(∂F/∂y)ᵀ u = -cotangent` at the returned `y`, with
    `F` the optimality condition (`∇_y E` for energies; the transport layers pin their
    potentials' gauge), through jaxopt's `implicit_diff.custom_root`, and pushes `u` through
    `∂F/∂θ`. The linear system is solved per set by a lineax solver, each set to its own
    tolerance (its right-hand side scaled to unit size) and iteration count.

    !!! note
        The implicit gradient is exact only at a stationary point. So the forward runs to
        the method's tolerance (default: 1e-4 in float32, 1e-8 in float64 for energies), and
        a set that has not reached it within `steps` raises (`throw=True`, with a message
        saying whether more steps would help) or is reported in `stats.converged`
        (`throw=False`, its gradient then approximate). lr and momentum do not move the fixed
        point, so they receive **zero** gradient; so does the auxiliary loss (it is
        reported, not differentiated). A projected forward (Nesterov's `clip`) is refused: it
        solves a constrained problem whose optimality condition is not `∇_y E = 0`.

    **Arguments:**

    - `steps`: the cap on forward steps (default 1000; the loop stops once every set has
      met its tolerance, so a generous cap costs nothing where the forward converges).
    - `lr`, `momentum`, `gtol`: the [`solvers.Nesterov`][] forward, with momentum restart
      (the path does not matter here, only where it ends); or `method`: any
      [`solvers.AbstractMethod`][]; with neither, the layer's own forward to tolerance
      ([`solvers.Newton`][] for a learned energy).
    - `linear_solver`: a lineax solver (`lineax.CG(rtol, atol, max_steps=...)`,
      `lineax.GMRES(...)`, `lineax.LU()`, `lineax.Diagonal()`, `lineax.Normal(lineax.CG(...))`,
      ...), or a shortcut: `"cg"` (default; symmetric positive definite Hessians, i.e. a
      strict minimum), `"normal_cg"` or `"gmres"` (indefinite or non-symmetric systems),
      `"lu"` (dense per-set solve, a reference for small problems), `"diagonal"` (exact for
      separable energies, whose Hessian is diagonal).
    - `preconditioner`: None, or `"jacobi"`: the inverse of each set's Hessian diagonal
      (formed with `m` Hessian-vector products), for CG and GMRES.
    - `ridge`: optional Tikhonov term added to the system (biases the gradient).
    - `tol`, `maxiter`: a shortcut's relative tolerance (default 1e-5 in float32, 1e-10 in
      float64) and iteration cap (default 100); a lineax solver carries its own.
    - `throw`: raise on divergence, non-convergence and a failed backward solve (default).
      With `throw=False` the forward's failures are reported in `stats`, and a set whose
      backward solve failed keeps the linear solver's last iterate (an approximate gradient,
      zero where not finite): use `report` to see those.
    - `report`: optional host callback receiving the backward's
      [`solvers.LinearSolveStats`][] (per-set residual, iterations, failed) at every
      backward pass, through `jax.debug.callback`.
    """

    steps: int = eqx.field(static=True)
    method: AbstractMethod | None
    linear_solver: str | lx.AbstractLinearSolver = eqx.field(static=True)
    preconditioner: str | None = eqx.field(static=True)
    ridge: float | None = eqx.field(static=True)
    tol: float | None = eqx.field(static=True)
    maxiter: int | None = eqx.field(static=True)
    throw: bool = eqx.field(static=True)
    report: Callable[[LinearSolveStats], Any] | None = eqx.field(static=True)
    runs_to_tolerance: ClassVar[bool] = True

    def __init__(
        self,
        steps: int = 1000,
        lr: float | None = None,
        momentum: float | None = None,
        gtol: float | None = None,
        clip: float | None = None,
        *,
        method: AbstractMethod | None = None,
        linear_solver: str | lx.AbstractLinearSolver = "cg",
        preconditioner: str | None = None,
        ridge: float | None = None,
        tol: float | None = None,
        maxiter: int | None = None,
        throw: bool = True,
        report: Callable[[LinearSolveStats], Any] | None = None,
    ):
        if clip is not None:
            raise ValueError(_CLIP_REFUSED)
        check_linear_solver(linear_solver)
        if not isinstance(linear_solver, str) and (tol is not None or maxiter is not None):
            raise ValueError(
                "tol and maxiter configure the linear_solver shortcuts; a lineax solver carries "
                f"its own tolerances and max_steps, got {linear_solver!r} with tol={tol}, "
                f"maxiter={maxiter}"
            )
        if preconditioner not in PRECONDITIONERS:
            raise ValueError(
                f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}"
            )
        check_non_negative(ridge, "ridge", optional=True)
        if tol is not None and not 0 < tol < 1:
            raise ValueError(f"tol must lie in (0, 1) or be None, got {tol}")
        self.steps = check_int(steps, "steps")
        self.method = _unconstrained(method_from(method, lr, momentum, gtol, None, True))
        self.linear_solver = linear_solver
        self.preconditioner = preconditioner
        self.ridge = ridge
        self.tol = tol
        self.maxiter = None if maxiter is None else check_int(maxiter, "maxiter")
        self.throw = throw
        self.report = report

    def with_steps(self, steps: int) -> "Implicit":
        """With a cap of `steps` forward steps."""
        return Implicit(
            steps,
            method=self.method,
            linear_solver=self.linear_solver,
            preconditioner=self.preconditioner,
            ridge=self.ridge,
            tol=self.tol,
            maxiter=self.maxiter,
            throw=self.throw,
            report=self.report,
        )

    @property
    def separable_only(self) -> bool:
        diagonal = self.linear_solver == "diagonal" or isinstance(self.linear_solver, lx.Diagonal)
        return super().separable_only or diagonal

    def _check_convergence(self, y: Array, converged: Array, history, method) -> Array:
        return raise_if_not_converged(
            y, ~converged, history, method,
            "Implicit differentiates the argmin, so it needs a converged forward",
        )  # fmt: skip

    def _solve(self, matvec, rhs: Float[Array, "b m"]) -> Float[Array, "b m"]:
        """The `solve(matvec, b)` jaxopt calls in the backward pass: per-set solves."""
        solver = from_shortcut(
            self.linear_solver, rhs.dtype, self.tol, self.maxiter, size=rhs.shape[1]
        )
        operator = matvec
        if self.ridge is not None:
            operator = lambda v: matvec(v) + self.ridge * v  # noqa: E731
        diagonal = None if self.preconditioner is None else _diagonal(operator, rhs)
        x, stats = solve_per_set(operator, rhs, solver, preconditioner=diagonal)
        if self.report is not None:
            jax.debug.callback(self.report, stats)
        if self.throw:
            x = eqx.error_if(x, jnp.any(stats.failed), BACKWARD_FAILED)
        else:  # a failed set keeps the solver's last iterate, or no gradient if not finite
            x = jnp.where(jnp.all(jnp.isfinite(x), axis=-1, keepdims=True), x, 0)
        return x

    def _iterate(
        self,
        method: AbstractMethod,
        fn: EnergyFn,
        y0: Float[Array, "b m"],
        args: Any,
        bounds: Bounds | None,
        optimality: Optimality | None,
    ):
        _unconstrained(method)
        condition = stationarity(fn) if optimality is None else optimality
        # custom_root may not close over traced arrays: they travel as its arguments.
        dynamic, static = eqx.partition((args, method), eqx.is_array)

        def residual(y, dynamic):
            args, _ = eqx.combine(dynamic, static)
            return condition(y, args)

        @implicit_diff.custom_root(residual, has_aux=True, solve=self._solve)
        def forward(init, dynamic):
            y0, bounds = init
            args, method = eqx.combine(dynamic, static)
            state = method.init(fn, y0, args, bounds)
            state, history = steps_to_tolerance(method, fn, state, args, self.steps)
            return state.y, (state, history)

        y, (state, history) = forward((y0, bounds), dynamic)
        return eqx.tree_at(lambda s: s.y, state, y), history


_CLIP_REFUSED = (
    "Implicit does not take a projected forward (clip): it solves a box-constrained problem, "
    "whose solution does not satisfy ∇_y E = 0. Use Unrolled or Truncated with clip."
)


def _unconstrained(method: AbstractMethod | None) -> AbstractMethod | None:
    if method is not None and method.constrained:
        raise ValueError(_CLIP_REFUSED)
    return method


def _diagonal(matvec, rhs: Float[Array, "b m"]) -> Float[Array, "b m"]:
    """Each set's operator diagonal, from `m` products with the unit vectors."""
    b, m = rhs.shape
    basis = jnp.eye(m, dtype=rhs.dtype)
    columns = jax.vmap(lambda e: matvec(jnp.broadcast_to(e, (b, m))))(basis)  # [m, b, m]
    return jnp.diagonal(columns, axis1=0, axis2=2)

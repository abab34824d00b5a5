"""Implicit differentiation through the optimality condition (jaxopt's `custom_root`)."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxopt import implicit_diff
from jaxtyping import Array, Float

from . import _linear_solve
from ._backend import (
    NOT_CONVERGED,
    AbstractBackend,
    check_steps,
    method_from,
    steps_to_tolerance,
)
from ._linear_solve import LinearSolveStats
from ._method import AbstractMethod, Bounds, EnergyFn
from ._nesterov import Nesterov

BACKWARD_FAILED = (
    "Implicit's backward linear solve failed for at least one set (a non-finite result, a "
    "Hessian that is not positive definite under CG, or the iteration cap reached before the "
    "tolerance). Fall back to linear_solver='normal_cg' or 'gmres' (indefinite or singular "
    "Hessians), add ridge=..., raise maxiter, or let the forward converge further. With "
    "throw=False such sets keep the solver's last iterate (an approximate gradient; zero if "
    "not finite), and report= shows them."
)


class Implicit(AbstractBackend):
    """Forward to tolerance without a tape; backward by the implicit function theorem.

    The forward runs the method in a `while_loop` that stops each set at its tolerance
    (at most `steps` steps), so memory does not depend on `steps` and converged sets cost
    nothing more. The backward solves `(∂F/∂y)ᵀ u = -cotangent` at the returned `y`, with
    `F` the method's optimality condition (`∇_y E` for energies), through jaxopt's
    `implicit_diff.custom_root`, and pushes `u` through `∂F/∂θ`. The linear system is solved
    per set, each to its own relative tolerance `tol` and within `maxiter` iterations.

    !!! note
        The implicit gradient is exact only at a stationary point. So the forward runs to
        `gtol` (default: 1e-4 in float32, 1e-8 in float64), and a set that has not reached it
        within `steps` raises (`throw=True`) or is reported in `stats.converged`
        (`throw=False`, its gradient then approximate). lr and momentum do not move the fixed
        point, so they receive **zero** gradient; so does the auxiliary loss (it is
        reported, not differentiated). `clip` is refused: a clipped forward solves a
        constrained problem whose optimality condition is not `∇_y E = 0`.

    **Arguments:**

    - `steps`: the cap on forward steps (default 300).
    - `lr`, `momentum`, `gtol`: the [`solvers.Nesterov`][] forward, with `restart=True` (the
      path does not matter here, only where it ends); or `method`: any
      [`solvers.AbstractMethod`][].
    - `linear_solver`: `"cg"` (default; symmetric positive definite Hessians, i.e. a strict
      minimum), `"normal_cg"` or `"gmres"` (indefinite or non-symmetric systems), `"lu"`
      (dense per-set solve, a reference for small problems), `"diagonal"` (exact for
      separable energies, whose Hessian is diagonal).
    - `ridge`: optional Tikhonov term added to the system (biases the gradient).
    - `tol`: relative residual each set's solve must reach (default 1e-5 in float32, 1e-10
      in float64); `maxiter`: iteration cap (default 100).
    - `throw`: raise on divergence, non-convergence and a failed backward solve (default).
      With `throw=False` the forward's failures are reported in `stats`, and a set whose
      backward solve failed keeps the linear solver's last iterate (an approximate gradient,
      zero where not finite): use `report` to see those.
    - `report`: optional host callback receiving the backward's
      [`solvers.LinearSolveStats`][] (per-set residual, iterations, failed) at every
      backward pass, through `jax.debug.callback`.
    """

    steps: int = eqx.field(static=True)
    method: AbstractMethod
    linear_solver: str = eqx.field(static=True)
    ridge: float | None = eqx.field(static=True)
    tol: float | None = eqx.field(static=True)
    maxiter: int = eqx.field(static=True)
    throw: bool = eqx.field(static=True)
    report: Callable[[LinearSolveStats], Any] | None = eqx.field(static=True)

    def __init__(
        self,
        steps: int = 300,
        lr: float | None = None,
        momentum: float | None = None,
        gtol: float | None = None,
        clip: float | None = None,
        *,
        method: AbstractMethod | None = None,
        linear_solver: str = "cg",
        ridge: float | None = None,
        tol: float | None = None,
        maxiter: int | None = None,
        throw: bool = True,
        report: Callable[[LinearSolveStats], Any] | None = None,
    ):
        if clip is not None or (isinstance(method, Nesterov) and method.clip is not None):
            raise ValueError(
                "Implicit does not take clip: a clipped forward solves a box-constrained "
                "problem, whose solution does not satisfy ∇_y E = 0. Use Unrolled or "
                "Truncated with clip."
            )
        if linear_solver not in _linear_solve.SOLVERS:
            raise ValueError(
                f"linear_solver must be one of {sorted(_linear_solve.SOLVERS)}, "
                f"got {linear_solver!r}"
            )
        if ridge is not None and not ridge >= 0:
            raise ValueError(f"ridge must be non-negative or None, got {ridge}")
        if tol is not None and not 0 < tol < 1:
            raise ValueError(f"tol must lie in (0, 1) or be None, got {tol}")
        self.steps = check_steps(steps, "steps")
        self.method = method_from(method, lr, momentum, gtol, clip, default_gtol=None, restart=True)
        self.linear_solver = linear_solver
        self.ridge = ridge
        self.tol = tol
        self.maxiter = (
            _linear_solve.DEFAULT_MAXITER if maxiter is None else check_steps(maxiter, "maxiter")
        )
        self.throw = throw
        self.report = report

    def with_steps(self, steps: int) -> "Implicit":
        """With a cap of `steps` forward steps."""
        return Implicit(
            steps,
            method=self.method,
            linear_solver=self.linear_solver,
            ridge=self.ridge,
            tol=self.tol,
            maxiter=self.maxiter,
            throw=self.throw,
            report=self.report,
        )

    @property
    def separable_only(self) -> bool:
        return self.method.separable_only or self.linear_solver == "diagonal"

    def _check_convergence(self, y: Array, converged: Array) -> Array:
        return eqx.error_if(y, jnp.any(~converged), NOT_CONVERGED)

    def _solve(self, matvec, rhs):
        """The `solve(matvec, b)` jaxopt calls in the backward pass: per-set solves."""
        rows, unravel = _rows(rhs)
        tol = _linear_solve.DEFAULT_TOLERANCE[rows.dtype.name] if self.tol is None else self.tol
        operator = lambda v: _rows(matvec(unravel(v)))[0]  # noqa: E731
        if self.ridge is not None:
            unridged = operator
            operator = lambda v: unridged(v) + self.ridge * v  # noqa: E731
        x, stats = _linear_solve.SOLVERS[self.linear_solver](operator, rows, tol, self.maxiter)
        if self.report is not None:
            jax.debug.callback(self.report, stats)
        if self.throw:
            x = eqx.error_if(x, jnp.any(stats.failed), BACKWARD_FAILED)
        else:  # a failed set keeps the solver's last iterate, or no gradient if not finite
            x = jnp.where(jnp.all(jnp.isfinite(x), axis=-1, keepdims=True), x, 0)
        return unravel(x)

    def _iterate(
        self,
        method: AbstractMethod,
        fn: EnergyFn,
        y0: Float[Array, "b m"],
        args: Any,
        bounds: Bounds | None,
    ):
        # custom_root may not close over traced arrays: they travel as its arguments.
        dynamic, static = eqx.partition((args, method), eqx.is_array)

        def optimality(y, dynamic):
            args, method = eqx.combine(dynamic, static)
            return method.optimality(fn, y, args)

        @implicit_diff.custom_root(optimality, has_aux=True, solve=self._solve)
        def forward(init, dynamic):
            y0, bounds = init
            args, method = eqx.combine(dynamic, static)
            state = method.init(fn, y0, args, bounds)
            state, history = steps_to_tolerance(method, fn, state, args, self.steps)
            return state.y, (state, history)

        y, (state, history) = forward((y0, bounds), dynamic)
        return eqx.tree_at(lambda s: s.y, state, y), history


def _rows(tree) -> tuple[Float[Array, "b n"], Callable]:
    """Each set's part of a pytree (every leaf `[b, ...]`) as one row of a `[b, n]` array, and
    the inverse map."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    b = leaves[0].shape[0]
    shapes = [leaf.shape for leaf in leaves]
    sizes = [leaf.size // b for leaf in leaves]
    rows = jnp.concatenate([leaf.reshape(b, -1) for leaf in leaves], axis=1)

    def unravel(rows):
        parts = jnp.split(rows, np.cumsum(sizes)[:-1].tolist(), axis=1)
        return treedef.unflatten([p.reshape(s) for p, s in zip(parts, shapes, strict=True)])

    return rows, unravel

"""Implicit differentiation through the stationarity condition `∇_y E = 0` (jaxopt)."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxopt import implicit_diff, linear_solve
from jaxtyping import Array, Float

from ._backend import AbstractBackend
from ._nesterov import EnergyFn, Nesterov

_LINEAR_SOLVERS = {
    "cg": linear_solve.solve_cg,
    "normal_cg": linear_solve.solve_normal_cg,
    "gmres": linear_solve.solve_gmres,
    "lu": linear_solve.solve_lu,
}


class Implicit(AbstractBackend):
    """Forward: `steps` Nesterov steps without a tape. Backward: the implicit function theorem.

    The backward pass solves `(∂²E/∂y²)ᵀ u = -cotangent` at the returned `y` (jaxopt's
    `implicit_diff.custom_root` with optimality function `∇_y E`) and pushes `u` through
    `∂(∇_y E)/∂θ`. Memory is independent of `steps`.

    !!! note
        The gradient is exact only at a true stationary point: with too few steps it is
        the gradient of a point the forward pass never reached. lr and momentum do not move
        the fixed point, so they receive **zero** gradient under this backend; so does the
        auxiliary loss (it is reported, not differentiated).

    **Arguments:**

    - `steps`, `lr`, `momentum`, `gtol`, `clip`: as [`solvers.Unrolled`][].
    - `linear_solver`: `"cg"` (Hessian symmetric positive definite, i.e. at a strict minimum),
      `"normal_cg"` or `"gmres"` (indefinite or singular Hessians), `"lu"` (dense direct
      solve, for references on small problems).
    - `ridge`: optional Tikhonov term added to the Hessian in the linear solve.
    - `tol`, `maxiter`: tolerance and iteration cap of the iterative linear solvers.
    - `throw`: raise on divergence (default) or report it in `stats`.
    """

    steps: int = eqx.field(static=True)
    optimizer: Nesterov
    linear_solver: str = eqx.field(static=True)
    ridge: float | None = eqx.field(static=True)
    tol: float = eqx.field(static=True)
    maxiter: int | None = eqx.field(static=True)
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        steps: int = 10,
        lr: float = 0.125,
        momentum: float = 0.9,
        gtol: float = 1e-3,
        clip: float | None = None,
        linear_solver: str = "cg",
        ridge: float | None = None,
        tol: float = 1e-6,
        maxiter: int | None = None,
        throw: bool = True,
    ):
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if linear_solver not in _LINEAR_SOLVERS:
            raise ValueError(
                f"linear_solver must be one of {sorted(_LINEAR_SOLVERS)}, got {linear_solver!r}"
            )
        if ridge is not None and not ridge >= 0:
            raise ValueError(f"ridge must be non-negative or None, got {ridge}")
        self.steps = steps
        self.optimizer = Nesterov(lr, momentum, gtol, clip)
        self.linear_solver = linear_solver
        self.ridge = ridge
        self.tol = tol
        self.maxiter = maxiter
        self.throw = throw

    def _linear_solve(self, matvec, b):
        solve = _LINEAR_SOLVERS[self.linear_solver]
        if self.linear_solver == "lu":
            return solve(_with_ridge(matvec, self.ridge), b)
        return solve(matvec, b, ridge=self.ridge, tol=self.tol, maxiter=self.maxiter)

    def _iterate(
        self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any
    ) -> tuple[Float[Array, "b m"], dict[str, Array]]:
        dynamic, static = eqx.partition(args, eqx.is_array)  # closing over arrays breaks custom_vjp

        def optimality(y, dynamic, optimizer):
            del optimizer  # the fixed point does not depend on the optimizer
            energy = lambda y: jnp.sum(fn(y, eqx.combine(dynamic, static)))  # noqa: E731
            return jax.grad(energy)(y)

        @implicit_diff.custom_root(optimality, has_aux=True, solve=self._linear_solve)
        def forward(y0, dynamic, optimizer):
            state = (y0, jnp.zeros_like(y0))
            (y, _), history = optimizer.run(fn, state, eqx.combine(dynamic, static), self.steps)
            return y, history

        return forward(y0, dynamic, self.optimizer)


def _with_ridge(matvec, ridge):
    if ridge is None:
        return matvec
    return lambda v: jax.tree_util.tree_map(lambda a, b: a + ridge * b, matvec(v), v)

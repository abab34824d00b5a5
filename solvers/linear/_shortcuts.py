"""Linear solvers by name: the shortcuts `solvers.Implicit(linear_solver="cg")` accepts."""

import jax.numpy as jnp
import lineax as lx

SHORTCUTS = ("cg", "normal_cg", "gmres", "lu", "diagonal")
"""The names `Implicit(linear_solver=...)` takes besides a lineax solver."""

DEFAULT_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
"""A shortcut's relative tolerance when `tol=None`, by the dtype of the system."""

DEFAULT_MAXITER = 100
"""A shortcut's iteration cap when `maxiter=None`."""


def check_linear_solver(linear_solver) -> None:
    """`ValueError` for an unknown name, `TypeError` for anything else that is not a lineax
    solver."""
    if isinstance(linear_solver, str):
        if linear_solver not in SHORTCUTS:
            raise ValueError(
                f"linear_solver must be a lineax solver or one of {SHORTCUTS}, "
                f"got {linear_solver!r}"
            )
    elif not isinstance(linear_solver, lx.AbstractLinearSolver):
        raise TypeError(
            f"linear_solver must be a lineax solver (e.g. lineax.CG(rtol=1e-6, atol=1e-6)) or "
            f"one of {SHORTCUTS}, got {linear_solver!r}"
        )


def from_shortcut(
    linear_solver: str | lx.AbstractLinearSolver,
    dtype,
    tol: float | None,
    maxiter: int | None,
    size: int,
) -> lx.AbstractLinearSolver:
    """The lineax solver of a shortcut name for systems of `size` unknowns, with relative
    tolerance `tol` (default: the dtype's `DEFAULT_TOLERANCE`) and at most `maxiter`
    iterations (default `DEFAULT_MAXITER`; GMRES keeps up to `min(maxiter, size)` vectors,
    so it is exact within `size` steps on small systems); a lineax solver is returned as it
    is."""
    if not isinstance(linear_solver, str):
        return linear_solver
    tol = DEFAULT_TOLERANCE[jnp.dtype(dtype).name] if tol is None else tol
    maxiter = DEFAULT_MAXITER if maxiter is None else maxiter
    if linear_solver == "cg":
        return lx.CG(rtol=tol, atol=tol, max_steps=maxiter)
    if linear_solver == "normal_cg":
        return lx.Normal(lx.CG(rtol=tol, atol=tol, max_steps=maxiter))
    if linear_solver == "gmres":
        restart = min(maxiter, size)
        return lx.GMRES(rtol=tol, atol=tol, max_steps=maxiter, restart=restart,
                        stagnation_iters=restart)  # fmt: skip
    if linear_solver == "lu":
        return lx.LU()
    return lx.Diagonal()

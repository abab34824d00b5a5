"""The checks' default tolerances, derived from the dtype and the layer's solver, and the
converged reference the gradient checks compare with."""

import jax.numpy as jnp
import numpy as np

import solvers

from .._abstract import AbstractAggregation, AbstractSolvedAggregation

ROUNDING = 1000
"""A result computed in another order (a permutation, a batch, other padding) may differ by
rounding: `ROUNDING` units of the dtype's precision, relative to the result's scale."""

FINITE_DIFFERENCE_RTOL = 1e-6
"""Relative error allowed between a gradient and float64 central finite differences (whose own
error, with steps of `1e-6` times the data's scale, is near `1e-10`)."""

REFERENCE_TOLERANCE = 1e-10
"""The forward tolerance of the converged reference (float64)."""

REFERENCE_STEPS = 10_000
"""The cap on the converged reference's forward steps."""


def rounding_tolerance(dtype) -> float:
    """`ROUNDING · eps` of `dtype`: the default `rtol` of every comparison of values."""
    return ROUNDING * float(np.finfo(dtype).eps)


def gradient_tolerance(dtype) -> float:
    """`10 √eps` of `dtype`: the default relative error allowed between two gradients computed
    in another order. A gradient through a solver solves a linear system at the aggregate,
    which amplifies rounding by the system's conditioning, so it agrees to fewer digits than
    the aggregate."""
    return 10 * float(np.sqrt(np.finfo(dtype).eps))


def solver_tolerance(layer: AbstractAggregation, dtype) -> float:
    """The tolerance `layer`'s solver stops at for arrays of `dtype`
    (`solver.method.resolve(dtype).tolerance`; 0 for a closed-form aggregation or a method
    that takes every step): two solves stopped at it agree to about it, not better. The
    default `atol` of every comparison of values."""
    if not isinstance(layer, AbstractSolvedAggregation):
        return 0.0
    return float(layer.bound_solver().method.resolve(jnp.dtype(dtype)).tolerance or 0.0)


def is_approximate(backend: solvers.AbstractBackend) -> bool:
    """Whether the backend's gradient only approximates the implicit one at convergence (a
    truncated series): Truncated with `k < steps`, and Phantom. Unrolled, Checkpointed,
    Implicit and a backend of yours count as exact."""
    if isinstance(backend, solvers.Phantom):
        return True
    return isinstance(backend, solvers.Truncated) and backend.k < backend.steps


def converged_reference(layer: AbstractSolvedAggregation) -> AbstractSolvedAggregation:
    """`layer` with `solvers.Implicit(linear_solver="lu")` running its own forward method to
    `REFERENCE_TOLERANCE` (at most `REFERENCE_STEPS` steps): the gradient at convergence, with
    a dense linear solve. It reports (`throw=False`) rather than raises a forward that does
    not converge: the checks read `stats.converged`."""
    method = layer.bound_solver().method.with_tolerance(REFERENCE_TOLERANCE)
    backend = solvers.Implicit(REFERENCE_STEPS, method=method, linear_solver="lu", throw=False)
    return layer.with_solver(backend)

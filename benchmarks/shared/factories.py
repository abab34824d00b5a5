"""Backends by name: the one factory of the suites, the tasks' flags and the tests."""

from typing import Any

import solvers

BACKENDS = ("unrolled", "implicit", "truncated")
"""Names of the differentiation backends."""


def make_backend(name: str, steps: int, k: int | None = None, **options: Any):
    """Backend `name` with `steps` inner steps (Implicit: a cap); `k` is Truncated's taped
    steps (default `min(2, steps)`); `options` go to the backend's constructor (`lr`,
    `momentum`, `gtol`, `method`, `linear_solver`, `throw`, ...)."""
    if name == "unrolled":
        return solvers.Unrolled(steps, **options)
    if name == "implicit":
        return solvers.Implicit(steps, **options)
    if name == "truncated":
        return solvers.Truncated(steps, min(2, steps) if k is None else k, **options)
    raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}")

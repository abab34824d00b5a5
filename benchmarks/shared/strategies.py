"""Strategies by name: the command line's one string registry. Everything past the command
line passes backend and method values."""

from typing import Any

import solvers

BACKENDS = ("unrolled", "checkpointed", "truncated", "implicit", "phantom")
"""Names of the differentiation backends."""

METHODS = ("layer", "nesterov", "newton", "anderson", "sinkhorn")
"""Names of the forward methods; `layer`: the layer's own (Nesterov under a backend that
differentiates T steps and Newton under one that runs to tolerance for EA, CoordinateNewton
for analytic energies, Sinkhorn for the transport layers)."""


def make_method(name: str, transport: bool = False) -> solvers.AbstractMethod | None:
    """Method `name` at its defaults (None for `layer`); `anderson` accelerates Sinkhorn's
    update for a `transport` layer and a gradient step otherwise."""
    if name == "layer":
        return None
    if name == "nesterov":
        return solvers.Nesterov()
    if name == "newton":
        return solvers.Newton()
    if name == "anderson":
        return solvers.Anderson(sinkhorn=solvers.Sinkhorn() if transport else None)
    if name == "sinkhorn":
        return solvers.Sinkhorn()
    raise ValueError(f"unknown forward method {name!r}; choose from {METHODS}")


def make_backend(
    name: str,
    steps: int,
    *,
    k: int | None = None,
    method: solvers.AbstractMethod | None = None,
    damping: float = 1.0,
    **options: Any,
) -> solvers.AbstractBackend:
    """Backend `name` with `steps` inner steps (a cap where the forward runs to tolerance),
    `k` taped steps for Truncated (at most `steps`) and Phantom (None: the backend's own
    default), Phantom's `damping`, and `method` (None: the layer's own); `options` go to the
    constructor (`lr`, `gtol`, `linear_solver`, `throw`, ...)."""
    if name == "unrolled":
        return solvers.Unrolled(steps, method=method, **options)
    if name == "checkpointed":
        return solvers.Checkpointed(steps, method=method, **options)
    if name == "truncated":
        k = solvers.Truncated().k if k is None else k
        return solvers.Truncated(steps, min(k, steps), method=method, **options)
    if name == "implicit":
        return solvers.Implicit(steps, method=method, **options)
    if name == "phantom":
        taped = {} if k is None else {"k": k}
        return solvers.Phantom(steps, damping=damping, method=method, **taped, **options)
    raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}")


def describe(solver: solvers.AbstractBackend) -> dict[str, Any]:
    """What a report shows of a backend: its name, forward method and taped steps `k`."""
    return {
        "backend": type(solver).__name__.lower(),
        "method": type(solver.method).__name__ if solver.method is not None else "layer",
        "k": getattr(solver, "k", None),
    }

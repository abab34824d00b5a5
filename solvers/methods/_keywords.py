"""The keyword spelling of a backend's forward method (`lr=`, `momentum=`, `gtol=`, `clip=`),
resolved in one place."""

from ._abstract import AbstractMethod
from ._nesterov import Nesterov

PAPER_GTOL = 1e-3
"""Listing 2's per-set tolerance, the keyword default of a backend that runs a procedure."""


def method_from(
    method: AbstractMethod | None,
    lr: float | None,
    momentum: float | None,
    gtol: float | None,
    clip: float | None,
    to_tolerance: bool,
) -> AbstractMethod | None:
    """A backend's forward method: `method`; else, when any keyword is given, the paper's
    [`solvers.Nesterov`][] with them (`lr=0.125`, `momentum=0.9`, `clip=None` when not
    given; `gtol` Listing 2's 1e-3, or the dtype's default and momentum restart when the
    backend runs `to_tolerance`); else None: the layer supplies its own method. Giving both
    `method` and keywords raises `ValueError`; a `method` that is not a method, `TypeError`."""
    keywords = dict(lr=lr, momentum=momentum, gtol=gtol, clip=clip)
    given = [name for name, value in keywords.items() if value is not None]
    if method is not None:
        if given:
            raise ValueError(
                f"give either method= or the Nesterov keywords, not both (got method and {given})"
            )
        if not isinstance(method, AbstractMethod):
            raise TypeError(
                f"method must be a forward method such as solvers.Nesterov() or "
                f"solvers.Newton(), got {method!r}"
            )
        return method
    if not given:
        return None
    return Nesterov(
        lr=0.125 if lr is None else lr,
        momentum=0.9 if momentum is None else momentum,
        gtol=(None if to_tolerance else PAPER_GTOL) if gtol is None else gtol,
        clip=clip,
        restart=to_tolerance,
    )

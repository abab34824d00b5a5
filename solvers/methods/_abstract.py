"""The forward method: an iteration on the inner problem, and when it has solved it."""

import abc
from typing import Any, ClassVar

import equinox as eqx
from jaxtyping import Array, Bool, Float

from .._problem import Bounds, EnergyFn


class AbstractMethod(eqx.Module):
    """A forward method: how the inner argmin is iterated, and when a set has reached it.

    A method's state is an `eqx.Module` with at least the fields `y` (`[b, m]`, the current
    aggregate of each set), `stopped` (`[b]`, the set takes no further steps: it met the
    method's tolerance or diverged) and `diverged` (`[b]`). The differentiation backends of
    [`solvers`][] are written once against this interface (Optimistix's solver / adjoint
    split) and never name a method: a new method is one subclass.

    A subclass decides everything that changes a result: `init`, `step`, `converged`, its
    `tolerance` and how to change it (`with_tolerance`, `default_tolerance`: Truncated's
    taped steps run with tolerance 0, so that a set that stopped early still gets its
    gradient), and what `resume` means for its state.
    """

    separable_only: ClassVar[bool] = False
    """True when the method is valid only for energies that are a sum of one term per
    coordinate of `y` (a diagonal Hessian)."""

    transport_only: ClassVar[bool] = False
    """True when the method solves only entropic transport problems ([`solvers.EntropicOT`][])."""

    slow_advice: ClassVar[str] = "raise the backend's steps"
    """What to do when a set's residual was still falling when the steps ran out."""

    stall_advice: ClassVar[str] = "use another forward method"
    """What to do when a set's residual stopped falling (flat, oscillating or growing)."""

    @property
    @abc.abstractmethod
    def constrained(self) -> bool:
        """Whether the method projects `y` onto a constraint set (Nesterov's `clip`): its
        solution then need not satisfy `∇_y E = 0`, so Implicit refuses it."""

    @property
    @abc.abstractmethod
    def tolerance(self) -> float | None:
        """The per-set stopping tolerance; None until `resolve` fills in the dtype's default;
        0 never stops."""

    @abc.abstractmethod
    def with_tolerance(self, tolerance: float) -> "AbstractMethod":
        """This method (learned parameters included) stopping at `tolerance`."""

    @abc.abstractmethod
    def default_tolerance(self, dtype: Any) -> float:
        """The tolerance `tolerance=None` resolves to for arrays of `dtype`."""

    @abc.abstractmethod
    def init(self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any, bounds: Bounds | None):
        """The state before the first step."""

    @abc.abstractmethod
    def step(self, fn: EnergyFn, state, args: Any) -> tuple[Any, dict[str, Array]]:
        """One iteration for every set that has not stopped; returns the new state and the
        step's record (`RECORD_KEYS`, each `[b]`)."""

    @abc.abstractmethod
    def converged(self, state, grad_max_norm: Float[Array, " b"]) -> Bool[Array, " b"]:
        """Whether each set's returned `y` solves the problem to the method's tolerance, given
        `max|∇_y E|` there."""

    @abc.abstractmethod
    def resume(self, state):
        """`state` with every set that met the tolerance made to step again (diverged sets
        stay stopped), continuing from where it stopped."""

    def resolve(self, dtype: Any) -> "AbstractMethod":
        """This method with its tolerance filled in for `dtype` when it is None."""
        if self.tolerance is not None:
            return self
        return self.with_tolerance(self.default_tolerance(dtype))

    def without_tolerance(self) -> "AbstractMethod":
        """This method taking every step, whatever the tolerance (tolerance 0)."""
        return self.with_tolerance(0.0)

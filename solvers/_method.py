"""The forward method: an iteration on the inner problem, and the condition its solution meets."""

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

EnergyFn = Callable[[Float[Array, "b m"], Any], Float[Array, " b"]]
"""`fn(y, args) -> energies`: `b` independent sets, row `j` of `y` is set `j`'s aggregate and
`energies[j]` depends on `y[j]` only."""

Bounds = tuple[Float[Array, "b m"], Float[Array, "b m"]]
"""`(lower, upper)`: coordinate-wise bounds known to contain the minimiser (±inf where none)."""

RECORD_KEYS = ("grad_max_norm", "grad_sq_norm", "energy", "active")
"""What every step records per set: `max|∇E|`, `||∇E||²` and `E` at the point the step
evaluated, and whether the step moved the set."""


class AbstractMethod(eqx.Module):
    """A forward method: how the inner argmin is iterated, and what characterises its solution.

    A method's state is an `eqx.Module` with at least the fields `y` (`[b, m]`, the current
    aggregate of each set), `stopped` (`[b]`, the set takes no further steps: it met the
    method's tolerance or diverged) and `diverged` (`[b]`). The differentiation backends of
    [`solvers`][] are written once against this interface (Optimistix's solver / adjoint
    split): a new method needs no change to them.

    Subclass this with `init`, `step` and `converged` to add a forward method.
    """

    separable_only: ClassVar[bool] = False
    """True when the method is valid only for energies that are a sum of one term per
    coordinate of `y` (a diagonal Hessian)."""

    def resolve(self, dtype: Any) -> "AbstractMethod":
        """This method with its dtype-dependent defaults filled in (identity by default)."""
        del dtype
        return self

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

    def optimality(self, fn: EnergyFn, y: Float[Array, "b m"], args: Any) -> Float[Array, "b m"]:
        """The optimality condition `F(y, args) = 0` that the Implicit backend differentiates:
        the stationarity `∇_y E` by default."""
        return jax.grad(lambda y: jnp.sum(fn(y, args)))(y)

    def without_tolerance(self) -> "AbstractMethod":
        """This method for steps taken regardless of the tolerance (Truncated's taped steps):
        itself by default."""
        return self

    def resume(self, state):
        """`state` with every set that met the tolerance made to step again (diverged sets
        stay stopped)."""
        return eqx.tree_at(lambda s: s.stopped, state, state.diverged)


def grad_and_energy(fn: EnergyFn, y: Float[Array, "b m"], args: Any):
    """`(∇_y E, E)` for every set at once (the energies are row-separable)."""
    return jax.grad(lambda y: _sum_with_aux(fn(y, args)), has_aux=True)(y)


def record(g: Float[Array, "b m"], energy: Float[Array, " b"], active: Bool[Array, " b"]):
    """The per-set record of a step that evaluated the gradient `g` and energy `energy`."""
    return dict(
        grad_max_norm=jnp.max(jnp.abs(g), axis=-1),
        grad_sq_norm=jnp.sum(g**2, axis=-1),
        energy=energy,
        active=active,
    )


def per_set(flags: Bool[Array, " b"]) -> Bool[Array, "b 1"]:
    """Broadcast a per-set flag over the aggregate's coordinates."""
    return flags[:, None]


def _sum_with_aux(energies):
    return jnp.sum(energies), energies

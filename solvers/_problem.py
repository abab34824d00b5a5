"""What every strategy sees of an inner problem: `b` independent sets, an energy per set, and
the per-step record the backends collect."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

EnergyFn = Callable[[Float[Array, "b m"], Any], Float[Array, " b"]]
"""`fn(y, args) -> energies`: `b` independent sets, row `j` of `y` is set `j`'s aggregate and
`energies[j]` depends on `y[j]` only."""

Optimality = Callable[[Float[Array, "b m"], Any], Float[Array, "b m"]]
"""`condition(y, args) -> residual`: zero at the solution, row-separable like the energy; the
equation Implicit differentiates."""

Bounds = tuple[Float[Array, "b m"], Float[Array, "b m"]]
"""`(lower, upper)`: coordinate-wise bounds known to contain the minimiser (±inf where none)."""

RECORD_KEYS = ("grad_max_norm", "grad_sq_norm", "energy", "active")
"""What every step records per set: `max|∇E|`, `||∇E||²` and `E` at the point the step
evaluated, and whether the step moved the set."""


def grad_and_energy(fn: EnergyFn, y: Float[Array, "b m"], args: Any):
    """`(∇_y E, E)` for every set at once (the energies are row-separable)."""
    return jax.grad(lambda y: _sum_with_aux(fn(y, args)), has_aux=True)(y)


def stationarity(fn: EnergyFn) -> Optimality:
    """The optimality condition of minimising `fn`: `∇_y E = 0`."""
    return lambda y, args: grad_and_energy(fn, y, args)[0]


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

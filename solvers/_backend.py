"""The abstract differentiation backend: one forward iteration, a choice of gradient rule."""

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._nesterov import EnergyFn, Nesterov
from ._solution import Solution, Stats

DIVERGENCE_RATIO = 1e3
"""A solve is flagged as diverged when the final `max|∇_y E|` exceeds this multiple of the
first step's (floored at 1, so a set that starts at a stationary point is not flagged)."""


class AbstractBackend(eqx.Module):
    """How gradients reach the energy's parameters and inputs through the inner argmin.

    Every backend runs the same forward iteration (`steps` of [`solvers.Nesterov`][] from
    `y0`); subclasses differ only in `_iterate`, which decides what the backward pass sees.
    Subclass this to add a backend.

    When `throw` is true a diverged solve raises at run time (`eqx.error_if`, which works
    under `jit` and `vmap`); otherwise it is reported in `Solution.stats.diverged`.
    """

    steps: eqx.AbstractVar[int]
    optimizer: eqx.AbstractVar[Nesterov]
    throw: eqx.AbstractVar[bool]

    @abc.abstractmethod
    def _iterate(
        self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any
    ) -> tuple[Float[Array, "b m"], dict[str, Array]]:
        """Run `self.steps` optimizer steps; return `y` and the per-step history."""

    def solve(self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any) -> Solution:
        """Minimise `fn(y, args)` over `y` for each of the `b` sets, starting from `y0`.

        **Arguments:**

        - `fn`: `fn(y, args) -> energies`, `y: [b, m]`, energies `[b]`, row-separable.
        - `y0`: starting point, `[b, m]` (the paper uses zeros).
        - `args`: a pytree of everything `fn` depends on; gradients flow to its arrays.

        **Returns:** a [`solvers.Solution`][] with `value: [b, m]`.
        """
        y, history = self._iterate(fn, y0, args)
        final_grad, final_energy = jax.grad(lambda y: _sum_with_aux(fn(y, args)), has_aux=True)(y)
        grad_max_norm = jnp.max(jnp.abs(final_grad), axis=-1)
        start = jnp.maximum(history["grad_max_norm"][:, 0], 1.0)
        diverged = (
            ~jnp.all(jnp.isfinite(y), axis=-1)
            | ~jnp.isfinite(grad_max_norm)
            | (grad_max_norm > DIVERGENCE_RATIO * start)
        )
        if self.throw:
            y = eqx.error_if(
                y,
                jnp.any(diverged),
                "The inner optimisation diverged (non-finite y or a growing gradient): lower "
                "the solver's lr or raise the energy's regulariser. Pass throw=False to the "
                "solver to inspect Solution.stats instead.",
            )
        stats = Stats(
            grad_max_norm=grad_max_norm,
            aux_loss=jnp.mean(history["grad_sq_norm"], axis=-1),
            energy=final_energy,
            num_steps=jnp.sum(history["active"], axis=-1),
            converged=grad_max_norm < self.optimizer.gtol,
            diverged=diverged,
            grad_max_norm_history=history["grad_max_norm"],
            energy_history=history["energy"],
        )
        return Solution(value=y, stats=stats)


def _sum_with_aux(energies):
    return jnp.sum(energies), energies

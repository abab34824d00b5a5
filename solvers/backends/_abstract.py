"""The abstract differentiation backend: the solve every backend shares."""

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._problem import Bounds, EnergyFn, Optimality, grad_and_energy
from .._solution import Solution, Stats
from ..methods import AbstractMethod
from ._diagnosis import raise_if_diverged


class AbstractBackend(eqx.Module):
    """How gradients reach the energy's parameters and inputs through the inner argmin.

    A backend runs a forward `method` (any [`solvers.AbstractMethod`][]) for at most
    `steps` steps, and decides what the backward pass sees; it is written once against the
    method interface and names no method. A backend built without `method=` takes the
    forward method of the layer it is given to (`with_method`): Nesterov with the layer's
    learnable lr and momentum for a learned energy, CoordinateNewton for an analytic one,
    Sinkhorn for a transport layer; `runs_to_tolerance` tells the layer which kind of
    forward the backend wants.

    Subclass this with `_iterate` and `with_steps` to add a backend.

    When `throw` is true a failure raises at run time (`eqx.error_if`, which works under `jit`
    and `vmap`); otherwise it is reported in `Solution.stats`.
    """

    steps: eqx.AbstractVar[int]
    method: eqx.AbstractVar[AbstractMethod | None]
    throw: eqx.AbstractVar[bool]

    runs_to_tolerance: ClassVar[bool] = False
    """True when the forward runs to the method's tolerance and `steps` is only a cap (its
    gradient needs a converged forward); False when the backend differentiates a `steps`-step
    procedure."""

    @property
    def optimizer(self) -> AbstractMethod | None:
        """The forward method (the name of the paper's optimizer module)."""
        return self.method

    @property
    def separable_only(self) -> bool:
        """Whether this backend is valid only for separable energies (diagonal Hessians)."""
        return self.method is not None and self.method.separable_only

    @abc.abstractmethod
    def _iterate(
        self,
        method: AbstractMethod,
        fn: EnergyFn,
        y0: Float[Array, "b m"],
        args: Any,
        bounds: Bounds | None,
        optimality: Optimality | None,
    ) -> tuple[Any, dict[str, Array]]:
        """Run the method; return its final state and the per-step records `[b, steps]`."""

    @abc.abstractmethod
    def with_steps(self, steps: int) -> "AbstractBackend":
        """This backend with `steps` inner steps, the rest unchanged (the same forward method
        and its learned parameters): e.g. more steps at test than in training."""

    def with_method(self, method: AbstractMethod) -> "AbstractBackend":
        """This backend with forward method `method` (replacing its own, if any)."""
        if not isinstance(method, AbstractMethod):
            raise TypeError(f"method must be a solvers.AbstractMethod, got {method!r}")
        return eqx.tree_at(lambda b: b.method, self, method, is_leaf=lambda x: x is None)

    def _check_convergence(self, y: Array, converged: Array, history, method) -> Array:
        """A hook for backends whose gradient needs a converged forward (Implicit)."""
        del converged, history, method
        return y

    def solve(
        self,
        fn: EnergyFn,
        y0: Float[Array, "b m"],
        args: Any,
        bounds: Bounds | None = None,
        optimality: Optimality | None = None,
    ) -> Solution:
        """Minimise `fn(y, args)` over `y` for each of the `b` sets, starting from `y0`.

        **Arguments:**

        - `fn`: `fn(y, args) -> energies`, `y: [b, m]`, energies `[b]`, row-separable.
        - `y0`: starting point, `[b, m]` (the paper uses zeros).
        - `args`: a pytree of everything `fn` depends on; gradients flow to its arrays.
        - `bounds`: optional `(lower, upper)`, each broadcastable to `[b, m]`, known to contain
          the minimiser (used by methods that bracket, e.g. [`solvers.CoordinateNewton`][]).
        - `optimality`: `condition(y, args) -> [b, m]`, zero at the solution, for backends
          that differentiate it (default `∇_y fn`; transport problems pin their gauge:
          [`solvers.transport_optimality`][]).

        **Returns:** a [`solvers.Solution`][] with `value: [b, m]`.
        """
        if self.method is None:
            raise TypeError(
                f"{type(self).__name__} has no forward method: build it with method=... "
                "(e.g. solvers.Newton()), or give it to a layer, which supplies its own"
            )
        method = self.method.resolve(y0.dtype)
        state, history = self._iterate(method, fn, y0, args, bounds, optimality)
        y = state.y
        diverged = state.diverged | ~jnp.all(jnp.isfinite(y), axis=-1)
        if self.throw:
            y = raise_if_diverged(y, diverged, method)
            # Read from the last step's record, not an extra gradient evaluation: a set that
            # met the tolerance returned the point that step evaluated.
            last_evaluated = history["grad_max_norm"][:, -1]
            converged = method.converged(state, last_evaluated) & ~diverged
            y = self._check_convergence(y, converged, history["grad_max_norm"], method)
        # The statistics at the returned y cost one more gradient evaluation; under jit, XLA
        # drops it unless the caller reads them.
        final_grad, final_energy = grad_and_energy(fn, y, args)
        grad_max_norm = jnp.max(jnp.abs(final_grad), axis=-1)
        diverged = diverged | ~jnp.isfinite(grad_max_norm)
        stats = Stats(
            grad_max_norm=grad_max_norm,
            aux_loss=jnp.mean(history["grad_sq_norm"], axis=-1),
            energy=final_energy,
            num_steps=jnp.sum(history["active"], axis=-1),
            converged=method.converged(state, grad_max_norm) & ~diverged,
            diverged=diverged,
            grad_max_norm_history=history["grad_max_norm"],
            energy_history=history["energy"],
        )
        return Solution(value=y, stats=stats)

"""The abstract differentiation backend, and the loops and checks every backend shares."""

import abc
import operator
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._method import RECORD_KEYS, AbstractMethod, Bounds, EnergyFn, grad_and_energy
from ._nesterov import Nesterov
from ._solution import Solution, Stats

NOT_CONVERGED = (
    "The inner optimisation of Implicit did not reach its tolerance within `steps`, so the "
    "implicit gradient would not be the gradient of the returned value: raise steps, the lr, "
    "or the tolerance, or use Unrolled/Truncated. Pass throw=False to the solver to proceed "
    "with the approximate gradient and inspect Solution.stats.converged."
)
DIVERGED = (
    "The inner optimisation diverged (non-finite values, or a gradient growing past "
    "DIVERGENCE_RATIO times its first value): lower the solver's lr or raise the energy's "
    "regulariser. Pass throw=False to the solver to inspect Solution.stats instead."
)


class AbstractBackend(eqx.Module):
    """How gradients reach the energy's parameters and inputs through the inner argmin.

    A backend runs a forward `method` (an [`solvers.AbstractMethod`][]: [`solvers.Nesterov`][]
    by default) for at most `steps` steps, and decides what the backward pass sees; it is
    written once against the method interface, so any method composes with any backend.
    Subclass this with `_iterate` and `with_steps` to add a backend.

    When `throw` is true a failure raises at run time (`eqx.error_if`, which works under `jit`
    and `vmap`); otherwise it is reported in `Solution.stats`.
    """

    steps: eqx.AbstractVar[int]
    method: eqx.AbstractVar[AbstractMethod]
    throw: eqx.AbstractVar[bool]

    @property
    def optimizer(self) -> AbstractMethod:
        """The forward method (the name of the paper's optimizer module)."""
        return self.method

    @property
    def separable_only(self) -> bool:
        """Whether this backend is valid only for separable energies (diagonal Hessians)."""
        return self.method.separable_only

    @abc.abstractmethod
    def _iterate(
        self,
        method: AbstractMethod,
        fn: EnergyFn,
        y0: Float[Array, "b m"],
        args: Any,
        bounds: Bounds | None,
    ) -> tuple[Any, dict[str, Array]]:
        """Run the method; return its final state and the per-step records `[b, steps]`."""

    @abc.abstractmethod
    def with_steps(self, steps: int) -> "AbstractBackend":
        """This backend with `steps` inner steps, the rest unchanged (the same forward method
        and its learned parameters): e.g. more steps at test than in training."""

    def _check_convergence(self, y: Array, converged: Array) -> Array:
        """A hook for backends whose gradient needs a converged forward (Implicit)."""
        del converged
        return y

    def solve(
        self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any, bounds: Bounds | None = None
    ) -> Solution:
        """Minimise `fn(y, args)` over `y` for each of the `b` sets, starting from `y0`.

        **Arguments:**

        - `fn`: `fn(y, args) -> energies`, `y: [b, m]`, energies `[b]`, row-separable.
        - `y0`: starting point, `[b, m]` (the paper uses zeros).
        - `args`: a pytree of everything `fn` depends on; gradients flow to its arrays.
        - `bounds`: optional `(lower, upper)`, each broadcastable to `[b, m]`, known to contain
          the minimiser (used by methods that bracket, e.g. [`solvers.CoordinateNewton`][]).

        **Returns:** a [`solvers.Solution`][] with `value: [b, m]`.
        """
        method = self.method.resolve(y0.dtype)
        state, history = self._iterate(method, fn, y0, args, bounds)
        y = state.y
        diverged = state.diverged | ~jnp.all(jnp.isfinite(y), axis=-1)
        if self.throw:
            y = eqx.error_if(y, jnp.any(diverged), DIVERGED)
            # Read from the last step's record, not an extra gradient evaluation: a set that
            # met the tolerance returned the point that step evaluated.
            last_evaluated = history["grad_max_norm"][:, -1]
            y = self._check_convergence(y, method.converged(state, last_evaluated) & ~diverged)
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


def check_steps(value: Any, name: str, low: int = 1) -> int:
    """`value` as an int `>= low`; `TypeError` for a non-integer, `ValueError` below `low`."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return value


def method_from(
    method: AbstractMethod | None,
    lr: float | None,
    momentum: float | None,
    gtol: float | None,
    clip: float | None,
    default_gtol: float | None,
    restart: bool = False,
) -> AbstractMethod:
    """The forward method of a backend: `method`, or a [`solvers.Nesterov`][] from the keyword
    spelling (`lr=0.125`, `momentum=0.9`, `gtol=default_gtol`, `clip=None` when not given,
    and `restart`). Giving both raises `ValueError`."""
    keywords = dict(lr=lr, momentum=momentum, gtol=gtol, clip=clip)
    if method is not None:
        given = [name for name, value in keywords.items() if value is not None]
        if given:
            raise ValueError(
                f"give either method= or the Nesterov keywords, not both (got method and {given})"
            )
        if not isinstance(method, AbstractMethod):
            raise TypeError(f"method must be a solvers.AbstractMethod, got {type(method)}")
        return method
    return Nesterov(
        lr=0.125 if lr is None else lr,
        momentum=0.9 if momentum is None else momentum,
        gtol=default_gtol if gtol is None else gtol,
        clip=clip,
        restart=restart,
    )


def scan_steps(method: AbstractMethod, fn: EnergyFn, state, args: Any, steps: int):
    """`steps` method steps under `lax.scan` (reverse-differentiable: every step is taped)."""

    def body(state, _):
        return method.step(fn, state, args)

    state, history = jax.lax.scan(body, state, None, length=steps)
    return state, {name: h.T for name, h in history.items()}


def steps_to_tolerance(method: AbstractMethod, fn: EnergyFn, state, args: Any, steps: int):
    """At most `steps` method steps under `lax.while_loop`, stopping once every set has stopped.

    Not reverse-differentiable (nothing is taped). The records of the steps skipped after the
    loop ends repeat each set's last record, as a stopped set's records would.
    """
    b = state.stopped.shape[0]
    dtype = state.y.dtype
    empty = {
        name: jnp.zeros((steps, b), bool if name == "active" else dtype) for name in RECORD_KEYS
    }

    def cond(carry):
        t, state, _ = carry
        return (t < steps) & ~jnp.all(state.stopped)

    def body(carry):
        t, state, history = carry
        state, rec = method.step(fn, state, args)
        history = {name: history[name].at[t].set(rec[name]) for name in RECORD_KEYS}
        return t + 1, state, history

    t, state, history = jax.lax.while_loop(cond, body, (0, state, empty))
    ran = (jnp.arange(steps) < t)[:, None]
    last = {name: h[jnp.maximum(t - 1, 0)] for name, h in history.items()}
    filled = {
        name: jnp.where(ran, h, False if name == "active" else last[name][None])
        for name, h in history.items()
    }
    return state, {name: h.T for name, h in filled.items()}

"""Anderson acceleration of a fixed-point iteration, per set."""

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._checks import check_int, check_non_negative, check_positive
from .._entropic_ot import EntropicOT
from .._problem import Bounds, EnergyFn, grad_and_energy, per_set, record
from ._abstract import AbstractMethod
from ._nesterov import DEFAULT_TOLERANCE, DIVERGENCE_RATIO
from ._sinkhorn import Sinkhorn, sinkhorn_sweep


class AndersonState(eqx.Module):
    """`y` `[b, m]`; the last `history` iterates and their residuals `G(y) - y`, `[b, h, m]`
    each (slot `t mod h` holds step `t` since the last restart); per set: `count` (steps
    since the last restart), `last_norm` (the
    previous residual's norm), `first_norm` (the first gradient norm, -1 before it),
    `scale` (what a Sinkhorn tolerance is relative to), `stopped`, `diverged`."""

    y: Float[Array, "b m"]
    iterates: Float[Array, "b h m"]
    residuals: Float[Array, "b h m"]
    count: Int[Array, " b"]
    last_norm: Float[Array, " b"]
    first_norm: Float[Array, " b"]
    scale: Float[Array, " b"]
    stopped: Bool[Array, " b"]
    diverged: Bool[Array, " b"]


class Anderson(AbstractMethod):
    """Anderson acceleration (type II) of a fixed-point map `G`, each set with its own
    history and stopping.

    The map is a gradient step `G(y) = y - lr ∇_y E(y)` for energies, or, with
    `sinkhorn=Sinkhorn()`, the Sinkhorn update of a transport problem. A step evaluates the
    residual `r = G(y) - y` at `y` and mixes the last `history` iterates:
    `y ← Σ_i α_i (y_i + r_i)`, with `α` minimising `‖Σ_i α_i r_i‖` subject to `Σ α_i = 1`
    (a `history × history` least-squares problem, regularised by `ridge` times its scale).
    Safeguard: when a step did not decrease the residual, the history restarts from the
    current point, whose next step is a plain step of `G`.

    Differentiated (Unrolled, Truncated, Phantom), the mixing weights `α` are held constant:
    near convergence they are computed from residuals at rounding level, and their
    derivative would amplify that noise without bound. The derivative is then that of the
    mixed iteration of `G`, which tends to the implicit gradient more slowly than the
    iterates converge (on the tests' learned energy: 3e-4 off after 200 unrolled steps, 1e-2
    after 200 taped steps from the solution): pair Anderson with Implicit (under Phantom the
    taped steps restart its history, so they are plain mixing steps).

    A set stops once it meets the tolerance at its point (energies: `max|∇_y E| < tol`;
    Sinkhorn: its relative marginal violation) and returns that point; it stops as
    diverged when the gradient is not finite or grows past `DIVERGENCE_RATIO` times its
    first value.

    **Arguments:**

    - `tol`: the tolerance; `None` resolves to the dtype's default (as `Nesterov`'s
      `gtol`, or the Sinkhorn method's); 0 never stops.
    - `history`: iterates mixed (default 5, at least 1: 1 is the plain iteration).
    - `ridge`: Tikhonov regularisation of the mixing problem, relative (default 1e-10).
    - `lr`: step size of the gradient map (default 0.1; unused with `sinkhorn`).
    - `sinkhorn`: a [`solvers.Sinkhorn`][] whose update is the map, for transport layers.
    """

    tol: float | None = eqx.field(default=None, static=True)
    history: int = eqx.field(default=5, static=True)
    ridge: float = eqx.field(default=1e-10, static=True)
    lr: float = eqx.field(default=0.1, static=True)
    sinkhorn: Sinkhorn | None = None
    slow_advice: ClassVar[str] = "raise the backend's steps, or the history"
    stall_advice: ClassVar[str] = (
        "lower lr, raise the energy's regulariser, or use solvers.Newton()"
    )

    def __check_init__(self):
        check_non_negative(self.tol, "tol", optional=True)
        check_int(self.history, "history")
        check_non_negative(self.ridge, "ridge")
        check_positive(self.lr, "lr")
        if self.sinkhorn is not None and not isinstance(self.sinkhorn, Sinkhorn):
            raise TypeError(f"sinkhorn must be a solvers.Sinkhorn or None, got {self.sinkhorn!r}")

    @property
    def transport_only(self) -> bool:  # type: ignore[override]
        return self.sinkhorn is not None

    @property
    def constrained(self) -> bool:
        return False

    @property
    def tolerance(self) -> float | None:
        return self.tol

    def default_tolerance(self, dtype: Any) -> float:
        if self.sinkhorn is not None:
            return self.sinkhorn.default_tolerance(dtype)
        return DEFAULT_TOLERANCE[jnp.dtype(dtype).name]

    def with_tolerance(self, tolerance: float) -> "Anderson":
        return Anderson(tolerance, self.history, self.ridge, self.lr, self.sinkhorn)

    def resume(self, state: AndersonState) -> AndersonState:
        return eqx.tree_at(lambda s: s.stopped, state, state.diverged)

    def init(
        self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any, bounds: Bounds | None
    ) -> AndersonState:
        del bounds
        b, m = y0.shape
        if self.sinkhorn is not None:
            state = self.sinkhorn.init(fn, y0, args, None)  # checks the problem, matches f
            y0, scale = state.y, state.scale
        else:
            scale = jnp.ones(b, y0.dtype)
        empty = jnp.zeros((b, self.history, m), y0.dtype)
        no = jnp.zeros(b, bool)
        zero = jnp.zeros(b, y0.dtype)
        return AndersonState(y0, empty, empty, jnp.zeros(b, jnp.int32), zero, zero - 1,
                             scale, no, no)  # fmt: skip

    def _map(self, fn: EnergyFn, y: Float[Array, "b m"], args: Any, g: Float[Array, "b m"]):
        if self.sinkhorn is not None:
            problem: EntropicOT = args
            return sinkhorn_sweep(problem, y)
        return y - self.lr * g

    def step(
        self, fn: EnergyFn, state: AndersonState, args: Any
    ) -> tuple[AndersonState, dict[str, Array]]:
        if self.tol is None:
            raise ValueError("call resolve(dtype) before stepping an Anderson with tol=None")
        y = state.y
        g, energy = grad_and_energy(fn, y, args)
        residual = self._map(fn, y, args, g) - y
        norm = jnp.linalg.norm(g, axis=-1)
        first_norm = jnp.where(state.first_norm < 0, norm, state.first_norm)
        diverging = ~state.stopped & ~(norm <= DIVERGENCE_RATIO * first_norm)  # NaN diverges
        diverging = diverging | (~state.stopped & ~jnp.all(jnp.isfinite(residual), axis=-1))
        violation = jnp.max(jnp.abs(g), axis=-1)
        converging = ~state.stopped & ~diverging & (violation < self.tol * state.scale)
        active = ~state.stopped & ~diverging & ~converging
        # Safeguard: a step that did not decrease the residual restarts the history.
        size = jnp.linalg.norm(residual, axis=-1)
        restart = (state.count > 0) & ~(size < state.last_norm)
        writes = jnp.where(restart, 0, state.count)  # steps written since the last restart
        one_hot = jax.nn.one_hot(writes % self.history, self.history, dtype=y.dtype)[:, :, None]
        keep = jnp.where(restart, 0, 1).astype(y.dtype)[:, None, None] * (1 - one_hot)
        iterates = keep * state.iterates + one_hot * y[:, None]
        residuals = keep * state.residuals + one_hot * residual[:, None]
        count = writes + 1
        mixed = _mix(iterates, residuals, jnp.minimum(count, self.history), self.ridge)
        new = AndersonState(
            y=jnp.where(per_set(active), mixed, y),
            iterates=jnp.where(active[:, None, None], iterates, state.iterates),
            residuals=jnp.where(active[:, None, None], residuals, state.residuals),
            count=jnp.where(active, count, state.count),
            last_norm=jnp.where(active, size, state.last_norm),
            first_norm=first_norm,
            scale=state.scale,
            stopped=state.stopped | diverging | converging,
            diverged=state.diverged | diverging,
        )
        return new, record(g, energy, active)

    def converged(self, state: AndersonState, grad_max_norm: Float[Array, " b"]):
        """The tolerance holds at the returned point (the dtype's default when stepping
        with 0)."""
        tol = self.tol or self.default_tolerance(grad_max_norm.dtype)
        return (grad_max_norm < tol * state.scale) & ~state.diverged


def _mix(iterates, residuals, count, ridge: float):
    """`Σ_i α_i (y_i + r_i)` over each set's `count` valid slots, `α` minimising
    `‖Σ α_i r_i‖` with `Σ α_i = 1` (held constant under differentiation)."""
    h = iterates.shape[1]
    valid = jnp.arange(h)[None, :] < count[:, None]  # slots fill in order after a restart
    gram = jnp.einsum("bim,bjm->bij", residuals, residuals)
    both = valid[:, :, None] & valid[:, None, :]
    scale = jnp.max(jnp.abs(jnp.where(both, gram, 0)), axis=(1, 2))
    scale = jax.lax.stop_gradient(jnp.where(scale > 0, scale, 1))
    eye = jnp.eye(h, dtype=iterates.dtype)
    gram = jnp.where(both, gram, eye) + (ridge * scale)[:, None, None] * eye
    weights = jnp.linalg.solve(gram, jnp.where(valid, 1.0, 0.0)[..., None])[..., 0]
    weights = jax.lax.stop_gradient(weights / jnp.sum(weights, axis=-1, keepdims=True))
    return jnp.einsum("bi,bim->bm", weights, iterates + residuals)

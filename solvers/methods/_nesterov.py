"""Nesterov's accelerated gradient with learnable lr and momentum (paper Listing 2)."""

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Scalar

from .._checks import check_non_negative, check_positive, check_unit_interval
from .._problem import Bounds, EnergyFn, grad_and_energy, per_set, record
from ._abstract import AbstractMethod

DIVERGENCE_RATIO = 10.0
"""A set is flagged as diverged, and stops, at the first step whose gradient 2-norm exceeds this
multiple of the first step's. Stable Nesterov on a quadratic never exceeds 1.7× (the transient
peak of its iteration matrix), while an unstable step size grows geometrically, so this catches
divergence within a few steps of its start."""

DEFAULT_TOLERANCE = {"float32": 1e-4, "float64": 1e-8}
"""`gtol=None` resolves to this for the dtype of `y`: the tolerance Implicit's forward runs to."""


def inverse_softplus(x: float) -> float:
    """`log(exp(x) - 1)`; Listing 2 prints `log(exp(x) + 1)`, a typo. Written as
    `x + log(1 - exp(-x))`, which does not overflow for large `x`."""
    return float(x + np.log(-np.expm1(-x)))


def max_stable_lr(curvature: float, momentum: float = 0.9) -> float:
    """Largest learning rate for which Nesterov is stable on a quadratic of this curvature.

    Stability needs `lr * L < (2 + 2β) / (1 + 2β)` (≈ 1.36 at β = 0.9).
    """
    return (2 + 2 * momentum) / ((1 + 2 * momentum) * curvature)


class NesterovState(eqx.Module):
    """`y` and `velocity` `[b, m]`; per set: `stopped`, `diverged` and the gradient 2-norm of
    the first step (`-1` before it), the reference of the divergence test."""

    y: Float[Array, "b m"]
    velocity: Float[Array, "b m"]
    stopped: Bool[Array, " b"]
    diverged: Bool[Array, " b"]
    first_norm: Float[Array, " b"]


class Nesterov(AbstractMethod):
    """Nesterov-accelerated gradient descent from Listing 2 of the paper.

    `v ← μv − lr ∇E(y + μv)`, `y ← y + v` from `y0` with `v0 = 0`; `lr = softplus(raw_lr)` and
    `μ = sigmoid(raw_momentum)` are learnable.

    A set stops for good once the gradient at its look-ahead point `y + μv` has max-norm below
    `gtol`, and returns that look-ahead point, where the tolerance was measured. (Listing 2
    masks the update but keeps updating the velocity, so a masked set's look-ahead point kept
    drifting and could leave the tolerance again.) A set also stops when its gradient 2-norm
    grows past `DIVERGENCE_RATIO` times the first step's, or is not finite: it is then flagged
    as diverged. `clip` projects each coordinate of `y` onto `[-clip, clip]`.

    With `restart`, a set's momentum is reset whenever its step goes uphill (`∇E · v > 0`,
    O'Donoghue and Candès' gradient restart): the trajectory differs from Listing 2, but it
    converges faster when the momentum is too high for the energy's conditioning (4× fewer
    steps on a well-conditioned MOLPCBA-size energy). Implicit, which differentiates the
    fixed point and not the path, uses it by default.

    **Arguments:**

    - `lr`, `momentum`: initial values (Listing 2: 0.125 and 0.9).
    - `gtol`: per-set tolerance on `max|∇_y E|` (Listing 2: 1e-3). `None` resolves to the
      dtype's `DEFAULT_TOLERANCE` (1e-4 in float32, 1e-8 in float64); 0 never stops, and
      then `converged` means below `DEFAULT_TOLERANCE`.
    - `clip`: optional bound on `|y_d|`.
    - `restart`: reset the momentum when a step goes uphill.
    """

    raw_lr: Float[Array, ""]
    raw_momentum: Float[Array, ""]
    gtol: float | None = eqx.field(static=True)
    clip: float | None = eqx.field(static=True)
    restart: bool = eqx.field(static=True)

    slow_advice: ClassVar[str] = "raise the backend's steps, or use solvers.Newton()"
    stall_advice: ClassVar[str] = (
        "lower the lr (Nesterov(lr=...), or the backend's lr=), raise the energy's "
        "regulariser, or use solvers.Newton(), which safeguards every step"
    )

    def __init__(
        self,
        lr: float = 0.125,
        momentum: float = 0.9,
        gtol: float | None = 1e-3,
        clip: float | None = None,
        restart: bool = False,
    ):
        check_positive(lr, "lr")
        check_unit_interval(momentum, "momentum", closed_above=False)
        check_non_negative(gtol, "gtol", optional=True)
        check_positive(clip, "clip", optional=True)
        # Not weak-typed: an update would change the dtype and recompile a jitted step.
        dtype = jnp.result_type(float)
        self.raw_lr = jnp.array(inverse_softplus(lr), dtype)
        self.raw_momentum = jnp.array(np.log(momentum / (1 - momentum)), dtype)
        self.gtol = gtol
        self.clip = clip
        self.restart = restart

    @property
    def lr(self) -> Scalar:
        return jax.nn.softplus(self.raw_lr)

    @property
    def momentum(self) -> Scalar:
        return jax.nn.sigmoid(self.raw_momentum)

    @property
    def constrained(self) -> bool:
        """True with `clip`: the steps are projected onto `[-clip, clip]`."""
        return self.clip is not None

    @property
    def tolerance(self) -> float | None:
        return self.gtol

    def default_tolerance(self, dtype: Any) -> float:
        return DEFAULT_TOLERANCE[jnp.dtype(dtype).name]

    def with_tolerance(self, tolerance: float) -> "Nesterov":
        new = Nesterov(gtol=tolerance, clip=self.clip, restart=self.restart)
        return eqx.tree_at(
            lambda m: (m.raw_lr, m.raw_momentum), new, (self.raw_lr, self.raw_momentum)
        )

    def resume(self, state: "NesterovState") -> "NesterovState":
        """Every set that met the tolerance steps again, from its point and velocity."""
        return eqx.tree_at(lambda s: s.stopped, state, state.diverged)

    def init(
        self, fn: EnergyFn, y0: Float[Array, "b m"], args: Any, bounds: Bounds | None
    ) -> NesterovState:
        del fn, args, bounds
        b = y0.shape[0]
        no = jnp.zeros(b, bool)
        return NesterovState(y0, jnp.zeros_like(y0), no, no, -jnp.ones(b, y0.dtype))

    def step(
        self, fn: EnergyFn, state: NesterovState, args: Any
    ) -> tuple[NesterovState, dict[str, Array]]:
        if self.gtol is None:
            raise ValueError("call resolve(dtype) before stepping a Nesterov with gtol=None")
        lr, mu = self.lr.astype(state.y.dtype), self.momentum.astype(state.y.dtype)
        lookahead = state.y + mu * state.velocity
        g, energy = grad_and_energy(fn, lookahead, args)
        norm = jnp.sqrt(jnp.sum(g**2, axis=-1))
        first_norm = jnp.where(state.first_norm < 0, norm, state.first_norm)
        diverging = ~state.stopped & ~(norm <= DIVERGENCE_RATIO * first_norm)  # NaN diverges
        converging = ~state.stopped & ~diverging & (jnp.max(jnp.abs(g), axis=-1) < self.gtol)
        active = ~state.stopped & ~diverging & ~converging
        velocity = (mu * state.velocity - lr * g).astype(state.velocity.dtype)
        y = (state.y + velocity).astype(state.y.dtype)
        if self.clip is not None:
            y = jnp.clip(y, -self.clip, self.clip)
            lookahead = jnp.clip(lookahead, -self.clip, self.clip)
        y = jnp.where(per_set(active), y, jnp.where(per_set(converging), lookahead, state.y))
        uphill = jnp.sum(g * velocity, axis=-1) > 0  # the step went uphill: restart
        keep = active & ~uphill if self.restart else active
        velocity = jnp.where(per_set(keep), velocity, 0)
        new = NesterovState(
            y=y,
            velocity=velocity,
            stopped=state.stopped | diverging | converging,
            diverged=state.diverged | diverging,
            first_norm=first_norm,
        )
        return new, record(g, energy, active)

    def converged(self, state: NesterovState, grad_max_norm: Float[Array, " b"]):
        """`max|∇E| < gtol` at the returned point; with `gtol = 0` (run every step), below
        the dtype's `DEFAULT_TOLERANCE`."""
        gtol = self.gtol or DEFAULT_TOLERANCE[grad_max_norm.dtype.name]
        return (grad_max_norm < gtol) & ~state.diverged

"""The inner optimizer: Nesterov momentum with learnable lr and momentum (paper Listing 2)."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar

EnergyFn = Callable[[Float[Array, "b m"], Any], Float[Array, " b"]]
"""`fn(y, args) -> energies`: `b` independent sets, row `j` of `y` is set `j`'s aggregate and
`energies[j]` depends on `y[j]` only."""


def inverse_softplus(x: float) -> float:
    """`log(exp(x) - 1)`; Listing 2 prints `log(exp(x) + 1)`, a typo."""
    return float(np.log(np.expm1(x)))


def max_stable_lr(curvature: float, momentum: float = 0.9) -> float:
    """Largest learning rate for which Nesterov is stable on a quadratic of this curvature.

    Stability needs `lr * L < (2 + 2β) / (1 + 2β)` (≈ 1.36 at β = 0.9).
    """
    return (2 + 2 * momentum) / ((1 + 2 * momentum) * curvature)


class Nesterov(eqx.Module):
    """Nesterov-accelerated gradient descent from Listing 2 of the paper.

    `lr = softplus(raw_lr)` and `momentum = sigmoid(raw_momentum)` are learnable. A set whose
    look-ahead gradient has max-norm below `gtol` stops moving (its velocity still decays);
    `clip` projects each coordinate of `y` onto `[-clip, clip]`.

    **Arguments:**

    - `lr`, `momentum`: initial values (Listing 2: 0.125 and 0.9).
    - `gtol`: per-set stopping tolerance on `max|∇_y E|` (Listing 2: 1e-3).
    - `clip`: optional bound on `|y_d|`.
    """

    raw_lr: Float[Array, ""]
    raw_momentum: Float[Array, ""]
    gtol: float = eqx.field(static=True)
    clip: float | None = eqx.field(static=True)

    def __init__(
        self,
        lr: float = 0.125,
        momentum: float = 0.9,
        gtol: float = 1e-3,
        clip: float | None = None,
    ):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 < momentum < 1:
            raise ValueError(f"momentum must lie in (0, 1), got {momentum}")
        if not gtol >= 0:
            raise ValueError(f"gtol must be non-negative, got {gtol}")
        if clip is not None and not clip > 0:
            raise ValueError(f"clip must be positive or None, got {clip}")
        # Not weak-typed: an update would change the dtype and recompile a jitted step.
        dtype = jnp.result_type(float)
        self.raw_lr = jnp.array(inverse_softplus(lr), dtype)
        self.raw_momentum = jnp.array(np.log(momentum / (1 - momentum)), dtype)
        self.gtol = gtol
        self.clip = clip

    @property
    def lr(self) -> Scalar:
        return jax.nn.softplus(self.raw_lr)

    @property
    def momentum(self) -> Scalar:
        return jax.nn.sigmoid(self.raw_momentum)

    def run(
        self,
        fn: EnergyFn,
        state: tuple[Float[Array, "b m"], Float[Array, "b m"]],
        args: Any,
        steps: int,
    ) -> tuple[tuple[Float[Array, "b m"], Float[Array, "b m"]], dict[str, Array]]:
        """Take `steps` steps from `state = (y, velocity)`.

        **Returns:** the final `(y, velocity)` and the per-step history, a dict of `[b, steps]`
        arrays: `grad_max_norm`, `grad_sq_norm`, `energy` (all at the look-ahead point) and
        `active` (whether the step's update was applied).
        """
        grad_fn = jax.grad(lambda y: _sum_with_aux(fn(y, args)), has_aux=True)
        lr, mu = self.lr, self.momentum

        def step(carry, _):
            y, v = carry
            g, energy = grad_fn(y + mu * v)
            g_max = jnp.max(jnp.abs(g), axis=-1)
            active = ~(g_max < self.gtol)  # a NaN gradient keeps the set moving: NaN shows
            v_new = (mu * v - lr * g).astype(v.dtype)
            y_new = (y + jnp.where(active[:, None], v_new, 0)).astype(y.dtype)
            if self.clip is not None:
                y_new = jnp.clip(y_new, -self.clip, self.clip)
            record = dict(
                grad_max_norm=g_max,
                grad_sq_norm=jnp.sum(g**2, axis=-1),
                energy=energy,
                active=active,
            )
            return (y_new, v_new), record

        state, history = jax.lax.scan(step, state, None, length=steps)
        return state, {name: h.T for name, h in history.items()}


def _sum_with_aux(energies: Float[Array, " b"]) -> tuple[Scalar, Float[Array, " b"]]:
    return jnp.sum(energies), energies

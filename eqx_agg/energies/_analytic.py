"""Analytic energies of Table 1: their argmin is a classic pooling, coordinate-wise."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from ._abstract import AbstractEnergy


class _Coordinatewise(AbstractEnergy):
    """Energies whose `y` has the elements' size (`m = d`)."""

    def aggregate_size(self, in_size: int) -> int:
        return in_size


class _Smoothed(_Coordinatewise):
    """Energies with a smoothing parameter `δ > 0` whose limit `δ → 0` is the exact pooling."""

    smoothing: eqx.AbstractVar[float]

    def __check_init__(self):
        if not self.smoothing > 0:
            raise ValueError(f"smoothing must be positive, got {self.smoothing}")


class Mean(_Coordinatewise):
    """`F(x, y) = ||x - y||²`, no regulariser: the argmin is the mean (Table 1).

    Curvature of the scaled energy: `2 log2(N + 1)`, so the default solver (lr 0.125,
    momentum 0.9) is stable for sets of up to 41 elements; see
    [`solvers.max_stable_lr`][].
    """

    scaled: bool = eqx.field(default=True, static=True)

    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " d"]) -> Scalar:
        return jnp.sum((x_i - y) ** 2)

    def regulariser(self, y: Float[Array, " d"]) -> Scalar:
        return jnp.zeros((), y.dtype)


class Sum(_Coordinatewise):
    """`F(x, y) = -x·y`, `R(y) = ||y||²/2`: the argmin is the sum (Table 1).

    Curvature of the scaled energy: `log2(N + 1) / N`, small for large sets, so large sets
    need more steps or a larger lr.
    """

    scaled: bool = eqx.field(default=True, static=True)

    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " d"]) -> Scalar:
        return -jnp.dot(x_i, y)

    def regulariser(self, y: Float[Array, " d"]) -> Scalar:
        return 0.5 * jnp.sum(y**2)


class Median(_Smoothed):
    """A smoothed `F(x, y) = |x - y|` (Table 1): the pseudo-Huber
    `sqrt((x - y)² + δ²) - δ`, no regulariser.

    The argmin tends to the coordinate-wise median as the smoothing `δ → 0` (any point
    between the two middle elements for an even count). The curvature is at most
    `log2(N + 1) / δ`, so the stable lr shrinks with `δ`.
    """

    smoothing: float = eqx.field(default=0.1, static=True)
    scaled: bool = eqx.field(default=True, static=True)

    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " d"]) -> Scalar:
        delta = self.smoothing
        return jnp.sum(jnp.sqrt((x_i - y) ** 2 + delta**2) - delta)

    def regulariser(self, y: Float[Array, " d"]) -> Scalar:
        return jnp.zeros((), y.dtype)


class Max(_Smoothed):
    """A smoothed `F(x, y) = max(0, x - y)` (Table 1): `δ · softplus((x - y) / δ)`, with
    the linear tilt `R(y) = Σ_d y_d / 2`.

    The tilt is needed because `Σ_i max(0, x_i - y)` alone is minimised by every
    `y ≥ max x`; with it the argmin solves `Σ_i sigmoid((x_i - y) / δ) = 1/2` and tends to
    the coordinate-wise max as the smoothing `δ → 0`. Curvature at most
    `log2(N + 1) / (4δ)`.
    """

    smoothing: float = eqx.field(default=0.1, static=True)
    scaled: bool = eqx.field(default=True, static=True)

    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " d"]) -> Scalar:
        delta = self.smoothing
        return jnp.sum(delta * jax.nn.softplus((x_i - y) / delta))

    def regulariser(self, y: Float[Array, " d"]) -> Scalar:
        return 0.5 * jnp.sum(y)

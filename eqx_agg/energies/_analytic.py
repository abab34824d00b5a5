"""Analytic energies of Table 1: their argmin is a classic pooling, coordinate-wise."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PyTree, Scalar

from .._segments import (
    segment_counts,
    segment_masked_max,
    segment_masked_min,
    segment_masked_sum,
)
from ._abstract import AbstractEnergy


class _Coordinatewise(AbstractEnergy):
    """Energies whose `y` has the elements' size (`m = d`) and that are a sum of one convex
    term per coordinate."""

    separable = True

    def aggregate_size(self, in_size: int) -> int:
        return in_size


class Mean(_Coordinatewise):
    """`F(x, y) = ||x - y||²`, no regulariser: the argmin is the mean (Table 1).

    Curvature of the scaled energy: `2 log2(N + 1)`, so Nesterov with lr 0.125 and momentum
    0.9 is stable for sets of up to 41 elements only (see [`solvers.max_stable_lr`][]); the
    default solver, a Newton step, is exact for any size.
    """

    scaled: bool = eqx.field(default=True, static=True)

    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " d"]) -> Scalar:
        return jnp.sum((x_i - y) ** 2)

    def regulariser(self, y: Float[Array, " d"]) -> Scalar:
        return jnp.zeros((), y.dtype)

    def bounds(self, x, segment_ids, num_segments, mask):
        """The mean lies between each set's smallest and largest value."""
        return _range(x, segment_ids, num_segments, mask)


class Sum(_Coordinatewise):
    """`F(x, y) = -x·y`, `R(y) = ||y||²/2`: the argmin is the sum (Table 1).

    Curvature of the scaled energy: `log2(N + 1) / N`, small for large sets, so Nesterov
    needs many steps there; the default solver, a Newton step, is exact for any size.
    """

    scaled: bool = eqx.field(default=True, static=True)

    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " d"]) -> Scalar:
        return -jnp.dot(x_i, y)

    def regulariser(self, y: Float[Array, " d"]) -> Scalar:
        return 0.5 * jnp.sum(y**2)

    def bounds(self, x, segment_ids, num_segments, mask):
        """The sum lies between the sums of each set's negative and positive values."""
        negative = segment_masked_sum(jnp.minimum(x, 0), segment_ids, num_segments, mask)
        positive = segment_masked_sum(jnp.maximum(x, 0), segment_ids, num_segments, mask)
        return negative, positive


class _Smoothed(_Coordinatewise):
    """Energies with a smoothing `δ > 0` whose limit `δ → 0` is the exact pooling.

    `smoothing` is `δ` in the data's units. With `smoothing=None` (the default) `δ` is chosen
    per set and coordinate so that the smoothing moves the argmin by at most about
    `relative_smoothing` times the set's range, at any data scale and set size (floored at
    the dtype's resolution). `potential`, which sees one element, then uses
    `δ = relative_smoothing` (a set of unit range).
    """

    smoothing: eqx.AbstractVar[float | None]
    relative_smoothing: eqx.AbstractVar[float]

    def __check_init__(self):
        if self.smoothing is not None and not self.smoothing > 0:
            raise ValueError(f"smoothing must be positive or None, got {self.smoothing}")
        if not 0 < self.relative_smoothing < 1:
            raise ValueError(
                f"relative_smoothing must lie in (0, 1), got {self.relative_smoothing}"
            )

    @abc.abstractmethod
    def bias_factor(self, counts: Float[Array, " s"]) -> Float[Array, " s"]:
        """How many `δ` the smoothing can move the argmin of a set of `counts` elements."""

    def smoothings(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> Float[Array, "s d"]:
        """`δ` of each set and coordinate."""
        if self.smoothing is not None:
            return jnp.full((num_segments, x.shape[1]), self.smoothing, x.dtype)
        bottom, top = _range(x, segment_ids, num_segments, mask)
        finfo = jnp.finfo(x.dtype)
        spread = jnp.maximum(top - bottom, finfo.eps * jnp.maximum(jnp.abs(top), jnp.abs(bottom)))
        counts = segment_counts(segment_ids, num_segments, mask, x.dtype)
        bias = self.bias_factor(jnp.maximum(counts, 1))[:, None]
        return jnp.maximum(self.relative_smoothing * spread / bias, 2 * jnp.sqrt(finfo.tiny))

    def prepare(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> tuple[Float[Array, "n d"], Float[Array, "n d"]]:
        """Each element with its set's `δ`."""
        return x, self.smoothings(x, segment_ids, num_segments, mask)[segment_ids]

    @abc.abstractmethod
    def prepared_potential(self, element: PyTree, y: Float[Array, " d"]) -> Scalar:
        """`F` of an element `(x_i, δ)`, with its set's smoothing `δ` (as `prepare` gives)."""

    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " d"]) -> Scalar:
        delta = self.relative_smoothing if self.smoothing is None else self.smoothing
        return self.prepared_potential((x_i, jnp.full_like(x_i, delta)), y)


class Median(_Smoothed):
    """A smoothed `F(x, y) = |x - y|` (Table 1): the pseudo-Huber
    `sqrt((x - y)² + δ²) - δ`, no regulariser.

    The argmin tends to the coordinate-wise median as `δ → 0` (any point between the two
    middle elements for an even count). Its distance to the median is at most about
    `δ·sqrt(t/2)` when `t` values tie at the median (or lie within `δ` of it), so the
    default `δ` is `0.005 × range / sqrt(N/2)`: within 0.5% of the set's range.
    """

    smoothing: float | None = eqx.field(default=None, static=True)
    relative_smoothing: float = eqx.field(default=0.005, static=True)
    scaled: bool = eqx.field(default=True, static=True)

    def bias_factor(self, counts: Float[Array, " s"]) -> Float[Array, " s"]:
        return jnp.sqrt(counts / 2)

    def prepared_potential(self, element, y: Float[Array, " d"]) -> Scalar:
        x_i, delta = element
        return jnp.sum(jnp.sqrt((x_i - y) ** 2 + delta**2) - delta)

    def regulariser(self, y: Float[Array, " d"]) -> Scalar:
        return jnp.zeros((), y.dtype)

    def bounds(self, x, segment_ids, num_segments, mask):
        """The median lies between each set's smallest and largest value."""
        return _range(x, segment_ids, num_segments, mask)


class Max(_Smoothed):
    """A smoothed `F(x, y) = max(0, x - y)` (Table 1): `δ · softplus((x - y) / δ)`, with
    the linear tilt `R(y) = Σ_d y_d / 2`.

    The tilt is needed because `Σ_i max(0, x_i - y)` alone is minimised by every
    `y ≥ max x`; with it the argmin solves `Σ_i sigmoid((x_i - y) / δ) = 1/2`, so it lies
    in `[max x, max x + δ log(2N)]` and tends to the coordinate-wise max as `δ → 0`. The
    default `δ` is `0.005 × range / log(2N)`: within 0.5% of the set's range, ties included.
    """

    smoothing: float | None = eqx.field(default=None, static=True)
    relative_smoothing: float = eqx.field(default=0.005, static=True)
    scaled: bool = eqx.field(default=True, static=True)

    def bias_factor(self, counts: Float[Array, " s"]) -> Float[Array, " s"]:
        return jnp.log(2 * counts)

    def prepared_potential(self, element, y: Float[Array, " d"]) -> Scalar:
        x_i, delta = element
        return jnp.sum(delta * jax.nn.softplus((x_i - y) / delta))

    def regulariser(self, y: Float[Array, " d"]) -> Scalar:
        return 0.5 * jnp.sum(y)

    def bounds(self, x, segment_ids, num_segments, mask):
        """`[max x, max x + δ log(2N)]`: where `Σ_i sigmoid((x_i - y) / δ)` crosses 1/2."""
        top = segment_masked_max(x, segment_ids, num_segments, mask)
        counts = segment_counts(segment_ids, num_segments, mask, x.dtype)
        delta = self.smoothings(x, segment_ids, num_segments, mask)
        width = delta * jnp.log(jnp.maximum(2 * counts, 1))[:, None]
        return top, top + width


def _range(x, segment_ids, num_segments, mask):
    """Each set's coordinate-wise `(min, max)`, `[s, d]` each (zeros for an empty set)."""
    return (
        segment_masked_min(x, segment_ids, num_segments, mask),
        segment_masked_max(x, segment_ids, num_segments, mask),
    )

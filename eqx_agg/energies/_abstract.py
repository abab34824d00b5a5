"""The abstract energy `E(X, y) = R(y) + Σ_i F(x_i, y)`, masked and optionally scaled."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, Scalar

SCALE_EPS = 1e-8
"""ε of the scaled energy, eq. 13."""


class AbstractEnergy(eqx.Module):
    """An energy over the aggregate `y`: `E(X, y) = R(y) + Σ_i F(x_i, y)` (paper eq. 3).

    Subclasses define the potential `F`, the regulariser `R` and the size of `y`. With
    `scaled` (the default) the energy is eq. 13 of the paper,
    `(R + Σ F) / (N + ε) · log2(N + 1)`, which keeps its gradient's size sublinear in the
    set size `N`. The empty set's energy is `||y||² / 2`, so its argmin is `y0 = 0`, with
    finite gradients under every backend.

    Subclass this (with a `potential`, `regulariser`, `aggregate_size`) to add an energy.
    """

    scaled: eqx.AbstractVar[bool]

    @abc.abstractmethod
    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " m"]) -> Scalar:
        """One element's potential `F(x_i, y)`."""

    @abc.abstractmethod
    def regulariser(self, y: Float[Array, " m"]) -> Scalar:
        """`R(y)`."""

    @abc.abstractmethod
    def aggregate_size(self, in_size: int) -> int:
        """Size `m` of `y` for elements of size `in_size`; raises `ValueError` if the energy
        cannot take elements of that size."""

    def readout(self, y: Float[Array, " m"]) -> Float[Array, " k"]:
        """The layer's output from the argmin `y` (the identity, except for `Attention`)."""
        return y

    def segment_energies(
        self,
        x: Float[Array, "n d"],
        y: Float[Array, "s m"],
        segment_ids: Int[Array, " n"],
        mask: Bool[Array, " n"],
    ) -> Float[Array, " s"]:
        """Energies of `s` sets stored together: element `i` belongs to set `segment_ids[i]`
        and counts only where `mask[i]`. Returns one energy per set, `[s]`."""
        num_segments = y.shape[0]
        x = jnp.where(mask[:, None], x, 0)
        potentials = jax.vmap(self.potential)(x, y[segment_ids])
        potentials = jnp.where(mask, potentials, 0)
        counts = jax.ops.segment_sum(mask.astype(y.dtype), segment_ids, num_segments)
        total = jax.vmap(self.regulariser)(y) + jax.ops.segment_sum(
            potentials, segment_ids, num_segments
        )
        if self.scaled:
            total = total / (counts + SCALE_EPS) * jnp.log2(counts + 1)
        return jnp.where(counts > 0, total, 0.5 * jnp.sum(y**2, axis=-1))

    def __call__(
        self,
        x: Float[Array, "n d"],
        y: Float[Array, " m"],
        mask: Bool[Array, " n"] | None = None,
    ) -> Scalar:
        """The total energy `E(X, y)` of one set; rows where `mask` is False are ignored."""
        if mask is None:
            mask = jnp.ones(x.shape[0], bool)
        segment_ids = jnp.zeros(x.shape[0], jnp.int32)
        return self.segment_energies(x, y[None], segment_ids, mask)[0]

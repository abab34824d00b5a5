"""Attention as an equilibrium (paper Appendix B)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Scalar

from .._segments import segment_masked_max
from ._abstract import AbstractEnergy


class Attention(AbstractEnergy):
    """`F(x, [y_r, y_s]) = w(x)·||x - y_r||² + (y_s - w(x))²`, `w(x) = exp(hᵀx)`, with a
    learned query `h` and no regulariser (Appendix B). `y` has size `d + 1`.

    Stationarity gives `y_r = Σ_i w_i x_i / Σ_i w_i`, the softmax-attention pooling, and
    `y_s = mean_i w_i`; the layer outputs `y_r`.

    !!! note
        Appendix B states `y_r = mean_i(w_i x_i)` and normalises by `y_s`; that is the
        argmin of `||w x - y_r||²`, not of the potential it writes. Both give the same
        aggregate; we keep the written potential, whose `y_r` is already normalised.

        Within a set the layer uses `w_i = exp(hᵀx_i - max_j hᵀx_j)` (as a softmax does),
        so no weight overflows at any data scale. This leaves `y_r` unchanged and scales
        `y_s`; `potential`, which sees one element, uses the unshifted weight.

    **Arguments:** `in_size`: element size `d`; `query_scale`: std of the initial query;
    `scaled`: use the scaled energy of eq. 13; `key`: a `jax.random` key.
    """

    query: Float[Array, " d"]
    scaled: bool = eqx.field(static=True)
    separable = True

    def __init__(
        self, in_size: int, query_scale: float = 0.1, scaled: bool = True, *, key: PRNGKeyArray
    ):
        if in_size < 1:
            raise ValueError(f"in_size must be at least 1, got {in_size}")
        self.query = query_scale * jax.random.normal(key, (in_size,))
        self.scaled = scaled

    def aggregate_size(self, in_size: int) -> int:
        if in_size != self.query.shape[0]:
            raise ValueError(
                f"Attention energy was built for elements of size {self.query.shape[0]}, "
                f"got elements of size {in_size}"
            )
        return in_size + 1

    def prepare(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> tuple[Float[Array, "n d"], Float[Array, " n"]]:
        """Each element with its weight, shifted by its set's largest logit."""
        logits = x @ self.query
        shift = segment_masked_max(logits[:, None], segment_ids, num_segments, mask)[:, 0]
        return x, jnp.exp(jnp.where(mask, logits - shift[segment_ids], -jnp.inf))

    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " m"]) -> Scalar:
        return self.prepared_potential((x_i, jnp.exp(jnp.dot(self.query, x_i))), y)

    def prepared_potential(self, element, y: Float[Array, " m"]) -> Scalar:
        x_i, weight = element
        y_r, y_s = y[:-1], y[-1]
        return weight * jnp.sum((x_i - y_r) ** 2) + (y_s - weight) ** 2

    def regulariser(self, y: Float[Array, " m"]) -> Scalar:
        return jnp.zeros((), y.dtype)

    def readout(self, y: Float[Array, " m"]) -> Float[Array, " d"]:
        return y[:-1]

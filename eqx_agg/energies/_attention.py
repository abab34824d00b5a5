"""Attention as an equilibrium (paper Appendix B)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

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

    **Arguments:** `in_size`: element size `d`; `query_scale`: std of the initial query;
    `key`: a `jax.random` key.
    """

    query: Float[Array, " d"]
    scaled: bool = eqx.field(static=True)

    def __init__(
        self, in_size: int, query_scale: float = 0.1, scaled: bool = True, *, key: PRNGKeyArray
    ):
        self.query = query_scale * jax.random.normal(key, (in_size,))
        self.scaled = scaled

    def aggregate_size(self, in_size: int) -> int:
        if in_size != self.query.shape[0]:
            raise ValueError(
                f"Attention energy was built for elements of size {self.query.shape[0]}, "
                f"got elements of size {in_size}"
            )
        return in_size + 1

    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " m"]) -> Scalar:
        weight = jnp.exp(jnp.dot(self.query, x_i))
        y_r, y_s = y[:-1], y[-1]
        return weight * jnp.sum((x_i - y_r) ** 2) + (y_s - weight) ** 2

    def regulariser(self, y: Float[Array, " m"]) -> Scalar:
        return jnp.zeros((), y.dtype)

    def readout(self, y: Float[Array, " m"]) -> Float[Array, " d"]:
        return y[:-1]

"""The set models of the paper's section 5: per-element encoder, a pooling, a decoder."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray, Scalar

import eqx_agg
import solvers

POOLINGS = ("sum", "attention", "ea", "otke", "rotp")
"""The poolings the set tasks compare (names of [`eqx_agg.make_pooling`][])."""

LABELS = {
    "sum": "Sum (Deep Sets)",
    "attention": "Multi-head attention",
    "ea": "Equilibrium Agg.",
    "otke": "OTKE",
    "rotp": "ROTP",
}


class ConvEncoder(eqx.Module):
    """The image encoder of section 5.2: a convolutional ResNet whose blocks halve the
    image with a stride-2 3×3 convolution and add a residual 3×3 convolution, then a linear
    projection of the flattened features. `[h, w] → [embed]`."""

    downs: tuple[eqx.nn.Conv2d, ...]
    residuals: tuple[eqx.nn.Conv2d, ...]
    projection: eqx.nn.Linear

    def __init__(self, image_size: int, channels: Sequence[int], embed: int, *, key: PRNGKeyArray):
        keys = jax.random.split(key, 2 * len(channels) + 1)
        downs, residuals, size, previous = [], [], image_size, 1
        for i, width in enumerate(channels):
            downs.append(eqx.nn.Conv2d(previous, width, 3, stride=2, padding=1, key=keys[2 * i]))
            residuals.append(eqx.nn.Conv2d(width, width, 3, padding=1, key=keys[2 * i + 1]))
            size, previous = (size + 1) // 2, width
        self.downs = tuple(downs)
        self.residuals = tuple(residuals)
        self.projection = eqx.nn.Linear(previous * size * size, embed, key=keys[-1])

    def __call__(self, image: Float[Array, "h w"]) -> Float[Array, " e"]:
        h = image[None].astype(self.downs[0].weight.dtype)  # conv needs matching dtypes
        for down, residual in zip(self.downs, self.residuals, strict=True):
            h = jax.nn.relu(down(h))
            h = h + residual(h)
        return self.projection(jnp.ravel(h))


class FlatEncoder(eqx.Module):
    """A residual MLP on the flattened image, `[h, w] → [embed]` (for 8×8 digits)."""

    mlp: eqx_agg.ResidualMLP

    def __init__(self, image_size: int, widths: Sequence[int], *, key: PRNGKeyArray):
        self.mlp = eqx_agg.ResidualMLP(image_size * image_size, widths, key=key)

    def __call__(self, image: Float[Array, "h w"]) -> Float[Array, " e"]:
        return self.mlp(jnp.ravel(image))


class SetModel(eqx.Module):
    """`decoder(pool(encoder(x_i) for x_i in X))`; with EA pooling the encoder may be absent
    (the potential sees the raw elements, as in section 5.1).

    `model(x, mask)` returns the prediction and the pooling's auxiliary loss (EA's eq. 5;
    zero for the closed-form poolings).
    """

    encoder: eqx.Module | None
    pool: eqx_agg.AbstractAggregation
    decoder: eqx_agg.ResidualMLP

    def __init__(self, encoder: eqx.Module | None, pool: eqx_agg.AbstractAggregation, decoder):
        self.encoder = encoder
        self.pool = pool
        self.decoder = decoder

    def __call__(
        self, x: Float[Array, "n ..."], mask: Bool[Array, " n"] | None = None
    ) -> tuple[Float[Array, " k"], Scalar]:
        h = x if self.encoder is None else jax.vmap(self.encoder)(x)
        pooled, aux = self.pool.aggregate(h, mask)
        return self.decoder(pooled), aux


def median_model(
    pooling: str,
    dim: int,
    *,
    in_size: int = 1,
    widths: Sequence[int],
    decoder_widths: Sequence[int],
    backend: solvers.AbstractBackend | None = None,
    regularisation: float = 0.1,
    heads: int = 4,
    key: PRNGKeyArray,
) -> SetModel:
    """The model of section 5.1, which the backend suites also measure: sets of `in_size`
    elements (1: numbers) pooled into `dim` numbers, decoded to one number.

    EA (`pooling="ea"`) minimises a residual-MLP potential with `widths` on the raw elements
    (no encoder); the other poolings follow a residual-MLP encoder `[*widths[:-1], dim]`.
    `backend` solves EA, OTKE or ROTP (None: the layer's default). The decoder is a residual
    MLP `[*decoder_widths, 1]` (the paper: `[128, 1]`)."""
    k_encoder, k_pool, k_decoder = jax.random.split(key, 3)
    if pooling == "ea":
        encoder, pool_in = None, in_size
    else:
        encoder = eqx_agg.ResidualMLP(in_size, (*widths[:-1], dim), key=k_encoder)
        pool_in = dim
    pool = eqx_agg.make_pooling(
        pooling, pool_in, size=dim, solver=backend, widths=widths, heads=heads,
        regularisation=regularisation, key=k_pool,
    )  # fmt: skip
    decoder = eqx_agg.ResidualMLP(pool.output_size(pool_in), (*decoder_widths, 1), key=k_decoder)
    return SetModel(encoder, pool, decoder)

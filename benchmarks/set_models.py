"""The set models of the paper's section 5: per-element encoder, a pooling, a decoder."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray, Scalar

import eqx_agg
import solvers

POOLINGS = ("sum", "attention", "ea")


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

    `model(x, mask)` returns the prediction and the EA auxiliary loss (eq. 5; zero for the
    baseline poolings).
    """

    encoder: eqx.Module | None
    pool: eqx.Module
    decoder: eqx_agg.ResidualMLP

    def __init__(self, encoder: eqx.Module | None, pool: eqx.Module, decoder):
        self.encoder = encoder
        self.pool = pool
        self.decoder = decoder

    def __call__(
        self, x: Float[Array, "n ..."], mask: Bool[Array, " n"] | None = None
    ) -> tuple[Float[Array, " k"], Scalar]:
        h = x if self.encoder is None else jax.vmap(self.encoder)(x)
        if isinstance(self.pool, eqx_agg.EquilibriumAggregation):
            sol = self.pool.solve(h, mask)
            return self.decoder(sol.value), sol.stats.aux_loss
        return self.decoder(self.pool(h, mask)), jnp.zeros((), h.dtype)


def make_pool(
    name: str,
    size: int,
    *,
    potential_in: int,
    potential_widths: Sequence[int],
    backend: solvers.AbstractBackend,
    heads: int = 4,
    key: PRNGKeyArray,
) -> eqx.Module:
    """A pooling into `size` dimensions: `sum`, `attention` (`min(heads, size)` heads of
    width `size / heads`, learned queries) or `ea` (a `Neural` potential on
    `potential_in + size` inputs with `potential_widths`, solved by `backend`)."""
    if name == "sum":
        return eqx_agg.pooling.Sum()
    if name == "attention":
        heads = min(heads, size)
        return eqx_agg.pooling.MultiHeadAttention(size, size, num_heads=heads, key=key)
    if name == "ea":
        energy = eqx_agg.energies.Neural(potential_in, size, widths=potential_widths, key=key)
        return eqx_agg.EquilibriumAggregation(energy, backend)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {name!r}")

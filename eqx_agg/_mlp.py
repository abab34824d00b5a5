"""The residual MLP of the paper's Listing 1 (`SuperMLP`), used by potentials and encoders."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


class ResidualMLP(eqx.Module):
    """A residual MLP: `x ← proj(x) + act(norm(linear(x)))` per hidden layer (Listing 1).

    Hidden layers get LayerNorm (when `normalise`) and the activation; the last layer is
    linear. Each layer adds its input back, through a linear projection when the width
    changes. With `residual=False` it is a plain MLP.

    **Arguments:**

    - `in_size`: input width; `widths`: the output width of each layer.
    - `activation`: hidden activation (Listing 1: `tanh`).
    - `normalise`: LayerNorm on hidden layers; `residual`: skip connections.
    - `key`: a `jax.random` key.
    """

    layers: tuple[eqx.nn.Linear, ...]
    norms: tuple[eqx.nn.LayerNorm | None, ...]
    projections: tuple[eqx.nn.Linear | None, ...]
    activation: Callable[[Array], Array]
    residual: bool = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        widths: Sequence[int],
        activation: Callable[[Array], Array] = jax.nn.tanh,
        normalise: bool = True,
        residual: bool = True,
        *,
        key: PRNGKeyArray,
    ):
        if len(widths) == 0:
            raise ValueError("widths must name at least one layer")
        keys = jax.random.split(key, 2 * len(widths))
        layers, norms, projections = [], [], []
        size = in_size
        for i, width in enumerate(widths):
            hidden = i < len(widths) - 1
            layers.append(eqx.nn.Linear(size, width, key=keys[2 * i]))
            norms.append(eqx.nn.LayerNorm(width) if hidden and normalise else None)
            needs_projection = residual and width != size
            projections.append(
                eqx.nn.Linear(size, width, key=keys[2 * i + 1]) if needs_projection else None
            )
            size = width
        self.layers = tuple(layers)
        self.norms = tuple(norms)
        self.projections = tuple(projections)
        self.activation = activation
        self.residual = residual

    def __call__(self, x: Float[Array, " i"]) -> Float[Array, " o"]:
        return self.from_first_layer(*self.first_layer_part(x))

    def first_layer_part(
        self, part: Float[Array, " p"], start: int = 0, bias: bool = True
    ) -> tuple[Float[Array, " w"], Float[Array, " w"]]:
        """The first layer's linear output and skip from the inputs `start : start + p` alone.

        The first layer is linear before its norm, so for `x = concat[a, b]` the parts add up:
        `first_layer_part(a, 0) + first_layer_part(b, len(a), bias=False)` is the part of the
        whole `x`. A caller whose `a` is fixed computes its part once (the x-part of a potential
        `F(x, y)` evaluated at many `y`). Returns `(linear, skip)`, each of the first width.
        """
        layer, projection = self.layers[0], self.projections[0]
        stop = start + part.shape[0]
        linear = layer.weight[:, start:stop] @ part
        if bias and layer.bias is not None:
            linear = linear + layer.bias
        if not self.residual:
            skip = jnp.zeros_like(linear)  # unused
        elif projection is None:  # identity skip: `part` in its place of the input
            skip = jnp.zeros(layer.weight.shape[1], part.dtype).at[start:stop].set(part)
        else:
            skip = projection.weight[:, start:stop] @ part
            if bias and projection.bias is not None:
                skip = skip + projection.bias
        return linear, skip

    def from_first_layer(
        self, linear: Float[Array, " w"], skip: Float[Array, " w"]
    ) -> Float[Array, " o"]:
        """The output from the first layer's linear output and skip (`first_layer_part`)."""
        x = None  # the previous layer's output, from the second layer on
        last = len(self.layers) - 1
        for i, (layer, norm, projection) in enumerate(
            zip(self.layers, self.norms, self.projections, strict=True)
        ):
            if i == 0:
                h = linear
            else:
                h = layer(x)
                skip = x if projection is None else projection(x)
            if i < last:
                if norm is not None:
                    h = norm(h)
                h = self.activation(h)
            x = skip + h if self.residual else h
        return x

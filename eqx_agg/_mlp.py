"""The residual MLP of the paper's Listing 1 (`SuperMLP`), used by potentials and encoders."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
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
        last = len(self.layers) - 1
        for i, (layer, norm, projection) in enumerate(
            zip(self.layers, self.norms, self.projections, strict=True)
        ):
            h = layer(x)
            if i < last:
                if norm is not None:
                    h = norm(h)
                h = self.activation(h)
            skip = x if projection is None else projection(x)
            x = skip + h if self.residual else h
        return x

"""The paper's learned potential (Listing 1)."""

import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Scalar

from solvers import inverse_softplus

from .._mlp import ResidualMLP
from ._abstract import AbstractEnergy


class Neural(AbstractEnergy):
    """`F_θ(x, y) = mean(h²)`, `h = ResidualMLP(concat[x, y])`, and
    `R(y) = (c + softplus(λ))·||y||²` with learnable `λ` (paper eq. 3, C.1, Listing 1: `c = 0`).

    The MLP has tanh + LayerNorm hidden layers, residual connections and a linear last
    layer; the sum-of-squares output makes `F ≥ 0`.

    **Arguments:**

    - `in_size`: element size `d`; `out_size`: aggregate size `m`.
    - `widths`: layer widths (Listing 1: `[2h, h, 32]`; default `h = 128`).
    - `regularisation`: the initial strength `c + softplus(λ)`.
    - `min_regularisation`: the fixed floor `c ≥ 0` (below `regularisation`): the strength
      stays above `c` however training moves `λ`, a lever to keep the energy solvable. On a
      built potential, `with_min_regularisation(c)`.
    - `scaled`: use the scaled energy of eq. 13.
    - `key`: a `jax.random` key.
    """

    net: ResidualMLP
    raw_regularisation: Float[Array, ""]
    min_regularisation: float = eqx.field(static=True)
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)
    scaled: bool = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        widths: Sequence[int] = (256, 128, 32),
        regularisation: float = 0.1,
        scaled: bool = True,
        *,
        min_regularisation: float = 0.0,
        key: PRNGKeyArray,
    ):
        if in_size < 1 or out_size < 1:
            raise ValueError(f"in_size and out_size must be at least 1, got {in_size}, {out_size}")
        if not regularisation > 0:
            raise ValueError(f"regularisation must be positive, got {regularisation}")
        _check_floor(min_regularisation, regularisation)
        self.net = ResidualMLP(in_size + out_size, widths, jax.nn.tanh, key=key)
        # Not weak-typed: an update would change the dtype and recompile a jitted step.
        self.raw_regularisation = jnp.array(
            inverse_softplus(regularisation - min_regularisation), jnp.result_type(float)
        )
        self.min_regularisation = float(min_regularisation)
        self.in_size = in_size
        self.out_size = out_size
        self.scaled = scaled

    def with_min_regularisation(self, value: float) -> "Neural":
        """This potential with the floor `c = value` and the same strength now (`λ` shifted
        to keep it), its network shared."""
        strength = float(self.min_regularisation + jax.nn.softplus(self.raw_regularisation))
        _check_floor(value, strength)
        new = object.__new__(type(self))  # as equinox rebuilds a module: every field copied
        for field in dataclasses.fields(self):
            object.__setattr__(new, field.name, getattr(self, field.name))
        raw = jnp.asarray(inverse_softplus(strength - value), self.raw_regularisation.dtype)
        object.__setattr__(new, "raw_regularisation", raw)
        object.__setattr__(new, "min_regularisation", float(value))
        return new

    def aggregate_size(self, in_size: int) -> int:
        if in_size != self.in_size:
            raise ValueError(
                f"Neural energy was built for elements of size {self.in_size}, "
                f"got elements of size {in_size}"
            )
        return self.out_size

    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " m"]) -> Scalar:
        h = self.net(jnp.concatenate([x_i, y]))
        return jnp.mean(h**2)

    def prepare(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> tuple[Float[Array, "n w"], Float[Array, "n w"]]:
        """The x-part of the first layer (linear output and skip), once per solve: a quarter
        of an inner step's work at `d ≈ m` that does not depend on `y`."""
        del segment_ids, num_segments, mask
        return jax.vmap(self.net.first_layer_part)(x)

    def prepared_potential(
        self, element: tuple[Float[Array, " w"], Float[Array, " w"]], y: Float[Array, " m"]
    ) -> Scalar:
        x_linear, x_skip = element
        y_linear, y_skip = self.net.first_layer_part(y, start=self.in_size, bias=False)
        h = self.net.from_first_layer(x_linear + y_linear, x_skip + y_skip)
        return jnp.mean(h**2)

    def regulariser(self, y: Float[Array, " m"]) -> Scalar:
        strength = self.min_regularisation + jax.nn.softplus(self.raw_regularisation)
        return strength * jnp.sum(y**2)


def _check_floor(floor: float, strength: float) -> None:
    if not 0 <= floor < strength:
        raise ValueError(
            f"min_regularisation must be >= 0 and below the regulariser's strength "
            f"{strength:.4g}, got {floor}"
        )

"""Aggregations by name: the one factory the graph readouts and the paper's tasks build from."""

from collections.abc import Sequence

from jaxtyping import PRNGKeyArray

import solvers

from . import energies, pooling
from ._abstract import AbstractAggregation
from ._aggregation import EquilibriumAggregation
from ._otke import OTKE
from ._rotp import ROTP

POOLINGS = ("sum", "mean", "max", "attention", "pna", "ea", "otke", "rotp")
"""Names accepted by [`eqx_agg.make_pooling`][]."""


def make_pooling(
    name: str,
    in_size: int,
    *,
    size: int | None = None,
    solver: solvers.AbstractBackend | None = None,
    widths: Sequence[int] = (600, 300, 32),
    heads: int = 4,
    pna_delta: float = 1.0,
    references: int = 4,
    regularisation: float = 0.1,
    key: PRNGKeyArray,
) -> AbstractAggregation:
    """Build an aggregation of `in_size`-wide elements by name.

    **Arguments:**

    - `name`: `"sum"`, `"mean"`, `"max"` (output `in_size`); `"attention"` (multi-head
      attention with `heads` learned queries, output `size`); `"pna"` (Corso et al., 2020,
      output `12 · in_size`); `"ea"` (Equilibrium Aggregation with a
      [`eqx_agg.energies.Neural`][] potential of `widths`, aggregate size `size`);
      `"otke"` (`references` points, one head, output `references · in_size`); `"rotp"`
      (uniform prior, output `in_size`).
    - `size`: output size of attention and EA (default `in_size`).
    - `solver`: the backend of `"ea"`, `"otke"`, `"rotp"` (default: each layer's own).
    - `widths`, `heads`, `pna_delta`, `references`: see `name`; `pna_delta` is PNA's `δ`,
      the mean `log(n + 1)` of the training sets' sizes `n`; `regularisation`: the EA
      potential's initial `softplus(λ)`.
    - `key`: a `jax.random` key.

    **Returns:** an [`eqx_agg.AbstractAggregation`][].
    """
    size = in_size if size is None else size
    if name == "sum":
        return pooling.Sum()
    if name == "mean":
        return pooling.Mean()
    if name == "max":
        return pooling.Max()
    if name == "attention":
        return pooling.MultiHeadAttention(in_size, size, min(heads, size), key=key)
    if name == "pna":
        return pooling.PNA(pna_delta)
    if name == "ea":
        energy = energies.Neural(in_size, size, tuple(widths), regularisation, key=key)
        return EquilibriumAggregation(energy, solver)
    if name == "otke":
        return OTKE(in_size, references, solver=solver, key=key)
    if name == "rotp":
        return ROTP(in_size, solver=solver, key=key)
    raise ValueError(f"unknown pooling {name!r}; expected one of {POOLINGS}")

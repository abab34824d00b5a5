"""Global readouts of a batch of graphs: a pooling module, built by name, applied per graph."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Scalar

import solvers

from .. import energies, pooling
from .._aggregation import EquilibriumAggregation

READOUTS = ("sum", "mean", "max", "attention", "pna", "ea")
"""Names accepted by [`eqx_agg.graphs.make_readout`][]."""


def make_readout(
    name: str,
    size: int,
    *,
    solver: solvers.AbstractBackend | None = None,
    widths: Sequence[int] = (600, 300, 32),
    heads: int = 4,
    pna_delta: float = 1.0,
    key: PRNGKeyArray,
) -> pooling.AbstractPooling | EquilibriumAggregation:
    """Build a global readout over `size`-wide node embeddings by name.

    **Arguments:**

    - `name`: one of `"sum"`, `"mean"`, `"max"`, `"attention"` (multi-head attention,
      `heads` heads), `"pna"` (Corso et al., 2020: 4 aggregators × 3 degree scalers,
      output `12 · size`) or `"ea"` (Equilibrium Aggregation with a
      [`eqx_agg.energies.Neural`][] potential of `widths`, aggregate size `size`; paper
      5.3: widths `[600, 300, 32]`, 15 inner steps).
    - `size`: node embedding width.
    - `solver`: EA's backend (default `solvers.Unrolled(steps=15)`, the paper's choice).
    - `widths`, `heads`: see `name`; `pna_delta`: PNA's `δ`, the mean `log(n + 1)` of the
      training graphs' node counts `n`.
    - `key`: a `jax.random` key.

    **Returns:** a pooling from [`eqx_agg.pooling`][] or an
    [`eqx_agg.EquilibriumAggregation`][]; use it as [`eqx_agg.graphs.GNN`][]'s readout or
    call [`eqx_agg.graphs.readout`][] with it.
    """
    if name == "ea":
        energy = energies.Neural(size, size, widths, key=key)
        solver = solvers.Unrolled(steps=15) if solver is None else solver
        return EquilibriumAggregation(energy, solver)
    if name == "sum":
        return pooling.Sum()
    if name == "mean":
        return pooling.Mean()
    if name == "max":
        return pooling.Max()
    if name == "attention":
        return pooling.MultiHeadAttention(size, size, heads, key=key)
    if name == "pna":
        return pooling.PNA(pna_delta)
    raise ValueError(f"unknown readout {name!r}; expected one of {READOUTS}")


def readout(
    pool: pooling.AbstractPooling | EquilibriumAggregation,
    h: Float[Array, "n d"],
    graph_ids: Int[Array, " n"],
    num_graphs: int,
    node_mask: Bool[Array, " n"],
    graph_mask: Bool[Array, " g"],
) -> tuple[Float[Array, "g k"], Scalar]:
    """Pool the real nodes of each graph: `h: [n, d]`, `graph_ids: [n]` → `[g, k]`.

    **Returns:** `(embeddings [g, k], aux_loss)`, `aux_loss` being EA's eq. 5 loss averaged
    over the real graphs (`graph_mask`), and 0 for the other readouts.
    """
    if not isinstance(pool, EquilibriumAggregation):
        return pool.segments(h, graph_ids, num_graphs, node_mask), jnp.zeros((), h.dtype)
    sol = pool.solve_segments(h, graph_ids, num_graphs, node_mask)
    weights = graph_mask.astype(h.dtype)
    return sol.value, jnp.sum(weights * sol.stats.aux_loss) / jnp.maximum(jnp.sum(weights), 1)


def readout_size(pool: pooling.AbstractPooling | EquilibriumAggregation, size: int) -> int:
    """Width of `pool`'s output for `size`-wide node embeddings."""
    if isinstance(pool, EquilibriumAggregation):
        return jax.eval_shape(
            pool.energy.readout, jnp.zeros(pool.energy.aggregate_size(size))
        ).shape[0]
    return pool.output_size(size)

"""Global readouts of a batch of graphs: an aggregation, built by name, applied per graph."""

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Scalar

import solvers

from .._abstract import AbstractAggregation
from .._factory import POOLINGS, make_pooling

READOUTS = POOLINGS
"""Names accepted by [`eqx_agg.graphs.make_readout`][] (those of [`eqx_agg.make_pooling`][])."""


def make_readout(
    name: str,
    size: int,
    *,
    solver: solvers.AbstractBackend | None = None,
    widths: Sequence[int] = (600, 300, 32),
    heads: int = 4,
    pna_delta: float = 1.0,
    key: PRNGKeyArray,
) -> AbstractAggregation:
    """[`eqx_agg.make_pooling`][] over `size`-wide node embeddings, with the paper's 5.3
    defaults for `"ea"`: potential `[600, 300, 32]`, `solvers.Unrolled(steps=15)`. `solver`
    is EA's backend (OTKE and ROTP keep their own).

    Use the result as [`eqx_agg.graphs.GNN`][]'s readout or call
    [`eqx_agg.graphs.readout`][] with it.
    """
    if name != "ea":
        solver = None
    elif solver is None:
        solver = solvers.Unrolled(steps=15)
    return make_pooling(
        name, size, solver=solver, widths=widths, heads=heads, pna_delta=pna_delta, key=key
    )


def readout(
    pool: AbstractAggregation,
    h: Float[Array, "n d"],
    graph_ids: Int[Array, " n"],
    num_graphs: int,
    node_mask: Bool[Array, " n"],
    graph_mask: Bool[Array, " g"],
) -> tuple[Float[Array, "g k"], Scalar]:
    """Pool the real nodes of each graph: `h: [n, d]`, `graph_ids: [n]` → `[g, k]`.

    **Returns:** `(embeddings [g, k], aux_loss)`, `aux_loss` being the aggregation's
    auxiliary loss (EA's eq. 5, 0 for closed-form poolings) averaged over the real graphs
    (`graph_mask`).
    """
    pooled, aux = pool.aggregate_segments(h, graph_ids, num_graphs, node_mask)
    weights = graph_mask.astype(h.dtype)
    return pooled, jnp.sum(weights * aux) / jnp.maximum(jnp.sum(weights), 1)

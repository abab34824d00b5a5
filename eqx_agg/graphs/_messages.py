"""Aggregation of each node's incoming messages: a sum, or any aggregation (local EA)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, Scalar

from .._abstract import AbstractAggregation


def aggregate_messages(
    messages: Float[Array, "e d"],
    receivers: Int[Array, " e"],
    num_nodes: int,
    edge_mask: Bool[Array, " e"],
    node_mask: Bool[Array, " n"],
    aggregation: AbstractAggregation | None,
) -> tuple[Float[Array, "n k"], Scalar]:
    """Pool the messages arriving at each node.

    With `aggregation=None` this is the sum of the real incoming messages (the canonical
    GIN/GCN aggregation); with an aggregation (an [`eqx_agg.EquilibriumAggregation`][]: the
    paper's local EA, Table 2 last row) each node's incoming messages form one set
    (`aggregation.aggregate_segments` over `receivers`). A node with no incoming message
    (isolated, or a padding node) gets the sum's `0`, or the aggregate of the empty set.

    **Arguments:**

    - `messages`: `[e, d]`, one per edge; `receivers`: `[e]` node index of each edge.
    - `num_nodes`: `n`; `edge_mask: [e]`, `node_mask: [n]`: True on real edges / nodes.
    - `aggregation`: None for the sum, or an [`eqx_agg.AbstractAggregation`][].

    **Returns:** `(aggregates [n, k], aux_loss)` where `aux_loss` is the aggregation's
    auxiliary loss (EA's eq. 5) averaged over real nodes (0 for the sum).
    """
    if aggregation is None:
        messages = jnp.where(edge_mask[:, None], messages, 0)
        return jax.ops.segment_sum(messages, receivers, num_nodes), jnp.zeros((), messages.dtype)
    pooled, aux = aggregation.aggregate_segments(messages, receivers, num_nodes, edge_mask)
    weights = node_mask.astype(messages.dtype)
    return pooled, jnp.sum(weights * aux) / jnp.maximum(jnp.sum(weights), 1)

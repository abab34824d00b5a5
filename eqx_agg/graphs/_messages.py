"""Aggregation of each node's incoming messages: a sum, or Equilibrium Aggregation (local EA)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, Scalar

from .._aggregation import EquilibriumAggregation


def aggregate_messages(
    messages: Float[Array, "e d"],
    receivers: Int[Array, " e"],
    num_nodes: int,
    edge_mask: Bool[Array, " e"],
    node_mask: Bool[Array, " n"],
    aggregation: EquilibriumAggregation | None,
) -> tuple[Float[Array, "n k"], Scalar]:
    """Pool the messages arriving at each node.

    With `aggregation=None` this is the sum of the real incoming messages (the canonical
    GIN/GCN aggregation); with an [`eqx_agg.EquilibriumAggregation`][] each node's incoming
    messages form one set (`aggregation.solve_segments` over `receivers`), the paper's
    local EA (Table 2, last row). A node with no incoming message (isolated, or a padding
    node) gets the sum's `0`, or EA's aggregate of the empty set, `y0 = 0`.

    **Arguments:**

    - `messages`: `[e, d]`, one per edge; `receivers`: `[e]` node index of each edge.
    - `num_nodes`: `n`; `edge_mask: [e]`, `node_mask: [n]`: True on real edges / nodes.
    - `aggregation`: None for the sum, or the EA layer.

    **Returns:** `(aggregates [n, k], aux_loss)` where `aux_loss` is EA's eq. 5 auxiliary
    loss averaged over real nodes (0 for the sum).
    """
    if aggregation is None:
        messages = jnp.where(edge_mask[:, None], messages, 0)
        return jax.ops.segment_sum(messages, receivers, num_nodes), jnp.zeros((), messages.dtype)
    sol = aggregation.solve_segments(messages, receivers, num_nodes, edge_mask)
    weights = node_mask.astype(messages.dtype)
    aux = jnp.sum(weights * sol.stats.aux_loss) / jnp.maximum(jnp.sum(weights), 1)
    return sol.value, aux

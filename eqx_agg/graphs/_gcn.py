"""The GCN layer of OGB's reference molecule models (Kipf & Welling, 2016, with bond features)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jraph
from jaxtyping import Array, Bool, Float, PRNGKeyArray, Scalar

from .._abstract import AbstractAggregation
from ._encoders import BOND_FEATURE_DIMS, FeatureEmbedding
from ._messages import aggregate_messages


class GCNConv(eqx.Module):
    """OGB's `GCNConv`: with `x = W h` and degrees `deg_i = 1 + #out-edges(i)`,
    `h_i ← Σ_{j→i} relu(x_j + bond(e_ji)) / sqrt(deg_i deg_j) + relu(x_i + r) / deg_i`.

    With `aggregation` (local EA) the normalised sum over incoming messages is replaced by
    Equilibrium Aggregation of the messages `relu(x_j + bond(e_ji))` (the scaled energy
    plays the part of the degree normalisation); the root term is kept.

    **Arguments:**

    - `size`: node width `d`.
    - `aggregation`: None (normalised sum) or an [`eqx_agg.EquilibriumAggregation`][] over
      `d`-sized messages with aggregate size `d`.
    - `key`: a `jax.random` key.
    """

    linear: eqx.nn.Linear
    root: Float[Array, " d"]
    bond_encoder: FeatureEmbedding
    aggregation: AbstractAggregation | None

    def __init__(
        self, size: int, aggregation: AbstractAggregation | None = None, *, key: PRNGKeyArray
    ):
        k1, k2, k3 = jax.random.split(key, 3)
        self.linear = eqx.nn.Linear(size, size, key=k1)
        self.root = jax.random.normal(k2, (size,), jnp.result_type(float))
        self.bond_encoder = FeatureEmbedding(BOND_FEATURE_DIMS, size, key=k3)
        self.aggregation = aggregation

    def __call__(
        self,
        h: Float[Array, "n d"],
        graph: jraph.GraphsTuple,
        node_mask: Bool[Array, " n"],
        edge_mask: Bool[Array, " e"],
        state: eqx.nn.State,
        *,
        inference: bool = False,
    ) -> tuple[Float[Array, "n d"], Scalar, eqx.nn.State]:
        """One message-passing step on a padded graph; returns `(h [n, d], aux_loss, state)`
        (`state` and `inference` are unused: the layer has no batch norm)."""
        del inference
        n = h.shape[0]
        x = jax.vmap(self.linear)(h)
        deg = jax.ops.segment_sum(edge_mask.astype(x.dtype), graph.senders, n) + 1
        messages = jax.nn.relu(x[graph.senders] + self.bond_encoder(graph.edges))
        if self.aggregation is None:
            norm = jax.lax.rsqrt(deg[graph.senders] * deg[graph.receivers])
            messages = norm[:, None] * messages
        pooled, aux = aggregate_messages(
            messages, graph.receivers, n, edge_mask, node_mask, self.aggregation
        )
        return pooled + jax.nn.relu(x + self.root) / deg[:, None], aux, state

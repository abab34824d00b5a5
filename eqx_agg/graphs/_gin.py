"""The GIN layer of OGB's reference molecule models (Xu et al., 2018, with bond features)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jraph
from jaxtyping import Array, Bool, Float, PRNGKeyArray, Scalar

from .._abstract import AbstractAggregation
from ._batch_norm import MaskedBatchNorm
from ._encoders import BOND_FEATURE_DIMS, FeatureEmbedding
from ._messages import aggregate_messages


class GINConv(eqx.Module):
    """`h_i ← MLP((1 + ε)·h_i + AGG_{j→i} relu(h_j + bond(e_ji)))` (OGB's `GINConv`).

    The MLP is `Linear(d, 2d) → BatchNorm → ReLU → Linear(2d, d)`, `ε` is learned
    (initially 0), and `AGG` is the sum, or Equilibrium Aggregation when `aggregation` is
    given (local EA; its aggregate size must be `d`).

    **Arguments:**

    - `size`: node width `d`.
    - `aggregation`: None (sum) or an [`eqx_agg.EquilibriumAggregation`][] over `d`-sized
      messages with aggregate size `d`.
    - `key`: a `jax.random` key.
    """

    bond_encoder: FeatureEmbedding
    hidden: eqx.nn.Linear
    norm: MaskedBatchNorm
    out: eqx.nn.Linear
    eps: Float[Array, ""]
    aggregation: AbstractAggregation | None

    def __init__(
        self, size: int, aggregation: AbstractAggregation | None = None, *, key: PRNGKeyArray
    ):
        k1, k2, k3 = jax.random.split(key, 3)
        self.bond_encoder = FeatureEmbedding(BOND_FEATURE_DIMS, size, key=k1)
        self.hidden = eqx.nn.Linear(size, 2 * size, key=k2)
        self.norm = MaskedBatchNorm(2 * size)
        self.out = eqx.nn.Linear(2 * size, size, key=k3)
        self.eps = jnp.zeros(())
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
        """One message-passing step on a padded graph; returns `(h [n, d], aux_loss, state)`."""
        messages = jax.nn.relu(h[graph.senders] + self.bond_encoder(graph.edges))
        pooled, aux = aggregate_messages(
            messages, graph.receivers, h.shape[0], edge_mask, node_mask, self.aggregation
        )
        z = jax.vmap(self.hidden)((1 + self.eps) * h + pooled)
        z, state = self.norm(z, node_mask, state, inference=inference)
        return jax.vmap(self.out)(jax.nn.relu(z)), aux, state

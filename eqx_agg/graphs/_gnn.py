"""OGB's reference GCN/GIN for molecules, with a choice of global readout and local aggregation."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jraph
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

import solvers

from .. import energies
from .._abstract import AbstractAggregation
from .._aggregation import EquilibriumAggregation
from ._batch_norm import MaskedBatchNorm
from ._encoders import ATOM_FEATURE_DIMS, FeatureEmbedding
from ._gcn import GCNConv
from ._gin import GINConv
from ._padding import node_graph_ids, padding_masks
from ._readout import make_readout, readout

CONVS = ("gcn", "gin")
"""Names of the message-passing layers [`eqx_agg.graphs.GNN`][] takes."""
_LAYERS = {"gcn": GCNConv, "gin": GINConv}


class GNN(eqx.Module):
    """A molecule property predictor: OGB's `GNN` (Hu et al., 2020) with a pluggable readout.

    Atom embedding → `num_layers` × (conv → masked batch norm → ReLU (not after the last
    layer) → dropout) → global readout → linear head. The conv is OGB's GCN or GIN with bond
    embeddings; each conv's message aggregation is the sum (`local="sum"`) or Equilibrium
    Aggregation (`local="ea"`, paper Table 2 last row). Defaults are OGB's and the paper's
    (5 layers, width 300, dropout 0.5; EA: potential `[600, 300, 32]`, 15 steps).

    **Arguments:**

    - `conv`: `"gcn"` or `"gin"`.
    - `readout`: a name for [`eqx_agg.graphs.make_readout`][] (`"sum"`, `"mean"`, `"max"`,
      `"attention"`, `"pna"`, `"ea"`, `"otke"`, `"rotp"`) or a ready aggregation.
    - `num_tasks`: outputs per graph.
    - `size`, `num_layers`, `dropout`: width, depth, dropout rate.
    - `local`: `"sum"` or `"ea"`.
    - `solver`: backend of the EA readout (default `solvers.Unrolled(steps=15)`).
    - `widths`, `heads`, `pna_delta`: the EA readout's potential widths, the attention
      readout's heads, PNA's `δ` (see [`eqx_agg.graphs.make_readout`][]).
    - `local_solver`, `local_widths`: the same for local EA (one EA layer per conv).
    - `aux_weight`, `local_aux_weight`: weights of the readout's and the local layers' eq. 5
      auxiliary losses in the returned `aux_loss` (paper D.2: 1 and 1e-4).
    - `key`: a `jax.random` key.

    Build with `model, state = eqx.nn.make_with_state(GNN)(...)`; the state holds the batch
    norms' running averages.
    """

    atom_encoder: FeatureEmbedding
    convs: tuple[GCNConv | GINConv, ...]
    norms: tuple[MaskedBatchNorm, ...]
    readout: AbstractAggregation
    head: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    aux_weight: float = eqx.field(static=True)
    local_aux_weight: float = eqx.field(static=True)

    def __init__(
        self,
        conv: str,
        readout: str | AbstractAggregation,
        num_tasks: int,
        size: int = 300,
        num_layers: int = 5,
        dropout: float = 0.5,
        local: str = "sum",
        solver: solvers.AbstractBackend | None = None,
        widths: Sequence[int] = (600, 300, 32),
        heads: int = 4,
        pna_delta: float = 1.0,
        local_solver: solvers.AbstractBackend | None = None,
        local_widths: Sequence[int] = (600, 300, 32),
        aux_weight: float = 1.0,
        local_aux_weight: float = 1e-4,
        *,
        key: PRNGKeyArray,
    ):
        if conv not in CONVS:
            raise ValueError(f"unknown conv {conv!r}; expected one of {CONVS}")
        if local not in ("sum", "ea"):
            raise ValueError(f"unknown local aggregation {local!r}; expected 'sum' or 'ea'")
        if num_layers < 1 or num_tasks < 1 or size < 1:
            raise ValueError(
                f"num_layers, num_tasks and size must be positive, got {num_layers}, "
                f"{num_tasks}, {size}"
            )
        keys = jax.random.split(key, 2 * num_layers + 3)
        self.atom_encoder = FeatureEmbedding(ATOM_FEATURE_DIMS, size, key=keys[0])
        local_solver = solvers.Unrolled(steps=15) if local_solver is None else local_solver
        self.convs = tuple(
            _LAYERS[conv](
                size,
                EquilibriumAggregation(
                    energies.Neural(size, size, local_widths, key=keys[3 + 2 * i]), local_solver
                )
                if local == "ea"
                else None,
                key=keys[4 + 2 * i],
            )
            for i in range(num_layers)
        )
        self.norms = tuple(MaskedBatchNorm(size) for _ in range(num_layers))
        if isinstance(readout, str):
            readout = make_readout(
                readout,
                size,
                solver=solver,
                widths=widths,
                heads=heads,
                pna_delta=pna_delta,
                key=keys[1],
            )
        self.readout = readout
        self.head = eqx.nn.Linear(readout.output_size(size), num_tasks, key=keys[2])
        self.dropout = eqx.nn.Dropout(dropout)
        self.aux_weight = aux_weight
        self.local_aux_weight = local_aux_weight

    def __call__(
        self,
        graph: jraph.GraphsTuple,
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
        inference: bool = False,
    ) -> tuple[Float[Array, "g t"], Scalar, eqx.nn.State]:
        """Predict every graph of a batch padded by `jraph.pad_with_graphs`.

        **Arguments:**

        - `graph`: nodes `[n, 9]` and edges `[e, 3]` OGB categorical features, `g` graphs
          of which the last (at least) is padding.
        - `state`: the batch norms' state.
        - `key`: dropout key; None trains without dropout.
        - `inference`: no dropout, batch norm with the running statistics in `state`
          (otherwise: statistics of the batch's real nodes, running averages updated).

        **Returns:** `(predictions [g, num_tasks], aux_loss, state)`: rows of padding
        graphs are meaningless; `aux_loss` is the weighted sum of the EA layers' eq. 5
        losses (0 without EA), to add to the task loss.
        """
        node_mask, edge_mask, graph_mask = padding_masks(graph)
        num_graphs = graph.n_node.shape[0]
        dropout = not inference and key is not None
        keys = jax.random.split(key, len(self.convs)) if dropout else [None] * len(self.convs)
        h = self.atom_encoder(graph.nodes)
        aux = 0.0
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h, local_aux, state = conv(h, graph, node_mask, edge_mask, state, inference=inference)
            h, state = norm(h, node_mask, state, inference=inference)
            if i < len(self.convs) - 1:
                h = jax.nn.relu(h)
            h = self.dropout(h, key=keys[i], inference=not dropout)
            aux = aux + self.local_aux_weight * local_aux
        pooled, global_aux = readout(
            self.readout, h, node_graph_ids(graph), num_graphs, node_mask, graph_mask
        )
        predictions = jax.vmap(self.head)(pooled)
        return predictions, aux + self.aux_weight * global_aux, state

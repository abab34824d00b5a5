"""Graph networks on `jraph.GraphsTuple` with Equilibrium Aggregation as readout and as local
aggregation (paper 5.3). Needs the `graphs` extra (jraph): `from eqx_agg import graphs`."""

from ._batch_norm import MaskedBatchNorm as MaskedBatchNorm
from ._encoders import ATOM_FEATURE_DIMS as ATOM_FEATURE_DIMS
from ._encoders import BOND_FEATURE_DIMS as BOND_FEATURE_DIMS
from ._encoders import FeatureEmbedding as FeatureEmbedding
from ._gcn import GCNConv as GCNConv
from ._gin import GINConv as GINConv
from ._gnn import CONVS as CONVS
from ._gnn import GNN as GNN
from ._messages import aggregate_messages as aggregate_messages
from ._padding import node_graph_ids as node_graph_ids
from ._padding import padding_masks as padding_masks
from ._readout import READOUTS as READOUTS
from ._readout import make_readout as make_readout
from ._readout import readout as readout

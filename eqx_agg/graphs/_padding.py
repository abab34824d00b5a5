"""Which nodes, edges and graphs of a padded `jraph.GraphsTuple` are real, and node → graph ids."""

import jax.numpy as jnp
import jraph
from jaxtyping import Array, Bool, Int


def node_graph_ids(graph: jraph.GraphsTuple) -> Int[Array, " n"]:
    """The index of the graph each node belongs to, `[n]` (static length for `jit`)."""
    num_nodes = graph.nodes.shape[0]
    return jnp.repeat(
        jnp.arange(graph.n_node.shape[0]), graph.n_node, total_repeat_length=num_nodes
    )


def padding_masks(
    graph: jraph.GraphsTuple,
) -> tuple[Bool[Array, " n"], Bool[Array, " e"], Bool[Array, " g"]]:
    """Masks of the real nodes, edges and graphs of a graph padded by `jraph.pad_with_graphs`.

    The padding convention is jraph's: the last graph holds every padding node and edge and
    is followed by nothing but (optional) empty graphs, so the last graph is always padding.

    **Returns:** `(node_mask [n], edge_mask [e], graph_mask [g])`, True where real.
    """
    if graph.n_node.shape[0] < 2:
        raise ValueError(
            "graph must be padded with jraph.pad_with_graphs (at least one padding graph), "
            f"got n_node of shape {graph.n_node.shape}"
        )
    return (
        jraph.get_node_padding_mask(graph),
        jraph.get_edge_padding_mask(graph),
        jraph.get_graph_padding_mask(graph),
    )

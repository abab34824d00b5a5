"""`eqx_agg.graphs`: encoders, masked batch norm, GCN/GIN layers, readouts and local EA on
padded `jraph.GraphsTuple`s (synthetic molecules: no rdkit or ogb needed)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

import solvers
from eqx_agg import graphs

SIZE = 8
SMALL_EA = {"widths": (16, 8, 4), "solver": solvers.Unrolled(steps=4)}


def random_graphs(seed: int, sizes=(3, 5, 1, 4)) -> list[jraph.GraphsTuple]:
    """Small random molecules-like graphs with OGB-range categorical features; each edge is
    stored in both directions, node 0 of the size-1 graph is isolated."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.6]
        senders = [p[0] for p in pairs] + [p[1] for p in pairs]
        receivers = [p[1] for p in pairs] + [p[0] for p in pairs]
        nodes = np.stack([rng.integers(0, d, n) for d in graphs.ATOM_FEATURE_DIMS], axis=1)
        half = np.stack([rng.integers(0, d, len(pairs)) for d in graphs.BOND_FEATURE_DIMS], 1)
        out.append(
            jraph.GraphsTuple(
                nodes=nodes.astype(np.int32),
                edges=np.concatenate([half, half]).reshape(-1, 3).astype(np.int32),
                senders=np.asarray(senders, np.int32),
                receivers=np.asarray(receivers, np.int32),
                n_node=np.array([n], np.int32),
                n_edge=np.array([len(senders)], np.int32),
                globals=None,
            )
        )
    return out


def padded(graph_list, n_node, n_edge, n_graph) -> jraph.GraphsTuple:
    graph = jraph.pad_with_graphs(jraph.batch_np(graph_list), n_node, n_edge, n_graph)
    return jax.tree_util.tree_map(jnp.asarray, graph)


def permute_nodes(graph: jraph.GraphsTuple, seed: int) -> jraph.GraphsTuple:
    """Shuffle the nodes inside each graph (and the edge list), relabelling the edges."""
    rng = np.random.default_rng(seed)
    starts = np.concatenate([[0], np.cumsum(graph.n_node)[:-1]])
    order = np.concatenate(
        [s + rng.permutation(n) for s, n in zip(starts, np.asarray(graph.n_node), strict=True)]
    )
    new_index = np.argsort(order)
    edge_order = np.concatenate(
        [
            s + rng.permutation(n)
            for s, n in zip(
                np.concatenate([[0], np.cumsum(graph.n_edge)[:-1]]),
                np.asarray(graph.n_edge),
                strict=True,
            )
        ]
    )
    return graph._replace(
        nodes=graph.nodes[order],
        edges=graph.edges[edge_order],
        senders=jnp.asarray(new_index[np.asarray(graph.senders)[edge_order]], jnp.int32),
        receivers=jnp.asarray(new_index[np.asarray(graph.receivers)[edge_order]], jnp.int32),
    )


def run(model, graph, state, **kwargs):
    """`model(graph, state, ...)` on a clone of `state` (eager calls may reuse a state)."""
    leaves, treedef = jax.tree_util.tree_flatten(state)
    return model(graph, jax.tree_util.tree_unflatten(treedef, leaves), **kwargs)


def make_model(conv, readout, key, local="sum", **kwargs):
    return eqx.nn.make_with_state(graphs.GNN)(
        conv,
        readout,
        2,
        size=SIZE,
        num_layers=1,
        local=local,
        local_widths=(16, 8, 4),
        local_solver=solvers.Unrolled(steps=4),
        **{**SMALL_EA, **kwargs},
        key=key,
    )


def test_feature_embedding_sums_one_row_per_feature(getkey):
    embed = graphs.FeatureEmbedding((3, 2), 4, key=getkey())
    x = jnp.array([[2, 1], [0, 0]])
    expected = jnp.stack(
        [embed.tables[0][2] + embed.tables[1][1], embed.tables[0][0] + embed.tables[1][0]]
    )
    assert np.allclose(embed(x), expected)
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        embed(jnp.zeros((2, 3), jnp.int32))


def test_masked_batch_norm_ignores_padding_rows():
    norm, state = eqx.nn.make_with_state(graphs.MaskedBatchNorm)(2)
    x = jnp.array([[1.0, 2.0], [3.0, 6.0], [100.0, -100.0]])
    mask = jnp.array([True, True, False])
    out, new_state = norm(x, mask, state)
    assert np.allclose(out[:2], [[-1, -1], [1, 1]], atol=1e-4)
    assert np.all(out[2] == 0)
    mean, var = new_state.get(norm.state_index)
    assert np.allclose(mean, 0.1 * np.array([2.0, 4.0]))
    assert np.allclose(var, 0.9 + 0.1 * np.array([2.0, 8.0]))  # unbiased batch variance
    inferred, same = norm(x, mask, new_state, inference=True)
    assert np.allclose(inferred[0], (x[0] - mean) / np.sqrt(var + 1e-5))
    assert same is new_state


def test_padding_masks_and_graph_ids():
    graph = padded(random_graphs(0), 20, 40, 6)
    node_mask, edge_mask, graph_mask = graphs.padding_masks(graph)
    assert node_mask.sum() == 13 and graph_mask.tolist() == [True] * 4 + [False] * 2
    assert edge_mask.sum() == int(np.sum(graph.n_edge[:4]))
    assert graphs.node_graph_ids(graph).tolist()[:13] == [0] * 3 + [1] * 5 + [2] + [3] * 4
    with pytest.raises(ValueError, match="pad_with_graphs"):
        graphs.padding_masks(jax.tree_util.tree_map(jnp.asarray, random_graphs(0, (3,))[0]))


def test_gcn_layer_matches_the_formula(getkey):
    layer = graphs.GCNConv(SIZE, key=getkey())
    graph = padded(random_graphs(1), 16, 32, 5)
    node_mask, edge_mask, _ = graphs.padding_masks(graph)
    h = jax.random.normal(getkey(), (16, SIZE))
    out, aux, _ = layer(h, graph, node_mask, edge_mask, eqx.nn.State(layer))
    x = np.asarray(jax.vmap(layer.linear)(h))
    bonds = np.asarray(layer.bond_encoder(graph.edges))
    s, r = np.asarray(graph.senders), np.asarray(graph.receivers)
    real = np.asarray(edge_mask)
    deg = np.bincount(s[real], minlength=16) + 1.0
    expected = np.maximum(x + np.asarray(layer.root), 0) / deg[:, None]
    for e in np.flatnonzero(real):
        expected[r[e]] += np.maximum(x[s[e]] + bonds[e], 0) / np.sqrt(deg[s[e]] * deg[r[e]])
    assert np.allclose(out[node_mask], expected[np.asarray(node_mask)])
    assert aux == 0


@eqx.filter_jit
def forward(model, state, graph_list, inference=False, key=None):
    """Every graph of `graph_list` through `model`, in one compiled call."""
    return [run(model, g, state, inference=inference, key=key) for g in graph_list]


@pytest.mark.parametrize("name", graphs.READOUTS)
def test_every_readout_ignores_padding_and_node_order(name, getkey):
    pool = graphs.make_readout(name, SIZE, **SMALL_EA, key=getkey())
    graph_list = random_graphs(2)
    base, bigger = padded(graph_list, 16, 32, 5), padded(graph_list, 40, 64, 9)
    rng = np.random.default_rng(0)
    h_real = rng.normal(size=(13, SIZE))
    order = [rng.permutation(3), 3 + rng.permutation(5), [8], 9 + rng.permutation(4)]
    order = np.concatenate(order)  # shuffles the nodes inside each graph

    def pooled(graph, h):
        node_mask, _, graph_mask = graphs.padding_masks(graph)
        ids = graphs.node_graph_ids(graph)
        g = graph.n_node.shape[0]
        return eqx.filter_jit(graphs.readout)(pool, h, ids, g, node_mask, graph_mask)

    def embed(n, rows):
        return jnp.asarray(np.concatenate([rows, 1e3 * rng.normal(size=(n - 13, SIZE))]))

    first, aux = pooled(base, embed(16, h_real))
    assert first.shape == (5, pool.output_size(SIZE))
    solved = name in ("ea", "otke", "rotp")  # their auxiliary loss is a squared residual
    assert np.all(np.isfinite(first[:4])) and ((aux > 0) if solved else (aux == 0))
    assert np.allclose(pooled(bigger, embed(40, h_real))[0][:4], first[:4], atol=1e-8)
    assert np.allclose(pooled(base, embed(16, h_real[order]))[0][:4], first[:4], atol=1e-8)


@pytest.mark.parametrize("conv, readout", [("gin", "ea"), ("gcn", "attention")])
def test_gnn_is_padding_and_permutation_invariant(conv, readout, getkey):
    model, state = make_model(conv, readout, getkey())
    graph_list = random_graphs(2)
    base = padded(graph_list, 16, 32, 5)
    bigger = padded(graph_list, 40, 64, 9)
    shuffled = permute_nodes(base, seed=3)
    outs = forward(model, state, [base, bigger, shuffled])
    predictions = [o[0][:4] for o in outs]
    assert np.all(np.isfinite(predictions[0]))
    assert np.allclose(predictions[0], predictions[1], atol=1e-8)
    assert np.allclose(predictions[0], predictions[2], atol=1e-8)
    for a, b in zip(*(jax.tree_util.tree_leaves(o[2]) for o in outs[:2]), strict=True):
        assert np.allclose(a, b, atol=1e-8)  # padding leaves the running statistics alone
    assert (outs[0][1] > 0) if readout == "ea" else (outs[0][1] == 0)


def test_dropout_is_off_without_a_key_and_at_inference(getkey):
    model, state = make_model("gin", "sum", getkey())
    graph = padded(random_graphs(4), 16, 32, 5)

    @eqx.filter_jit
    def outputs(model, state, key):
        return [
            run(model, graph, state, inference=inference, key=k)[0][:4]
            for inference in (False, True)
            for k in (None, key)
        ]

    plain, dropped, inferred, inferred_with_key = outputs(model, state, getkey())
    assert not np.allclose(plain, dropped)
    assert np.allclose(inferred, inferred_with_key)


def test_local_ea_on_a_graph_with_isolated_nodes(getkey):
    # Graph 0: nodes 0-1 joined; node 2 isolated. Graph 1: one isolated node.
    graph = jraph.GraphsTuple(
        nodes=np.zeros((4, 9), np.int32),
        edges=np.zeros((2, 3), np.int32),
        senders=np.array([0, 1], np.int32),
        receivers=np.array([1, 0], np.int32),
        n_node=np.array([3, 1], np.int32),
        n_edge=np.array([2, 0], np.int32),
        globals=None,
    )
    raw = graph
    graph = padded([raw], 8, 4, 3)
    node_mask, edge_mask, _ = graphs.padding_masks(graph)
    layer = graphs.GINConv(
        SIZE, graphs.make_readout("ea", SIZE, **SMALL_EA, key=getkey()), key=getkey()
    )
    messages = jax.random.normal(getkey(), (4, SIZE))
    pooled, aux = eqx.filter_jit(graphs.aggregate_messages)(
        messages, graph.receivers, 8, edge_mask, node_mask, layer.aggregation
    )
    assert np.all(pooled[2:] == 0)  # isolated and padding nodes: EA of the empty set, y0 = 0
    assert np.all(np.abs(pooled[:2]) > 0) and np.isfinite(aux)
    # A one-element set at node 1 is the EA of node 0's message alone.
    alone = eqx.filter_jit(layer.aggregation)(messages[:1])
    assert np.allclose(pooled[1], alone, atol=1e-8)

    model, state = make_model("gin", "ea", getkey(), local="ea")
    bigger = padded([raw], 16, 8, 6)
    (predictions, aux, _), (padded_predictions, _, _) = forward(model, state, [graph, bigger])
    assert np.all(np.isfinite(predictions[:2])) and aux > 0
    assert np.allclose(padded_predictions[:2], predictions[:2], atol=1e-8)


@pytest.mark.parametrize("backend", ["unrolled", "implicit", "truncated"])
def test_ea_readout_gradients_under_jit_with_every_backend(backend, getkey):
    solver = {
        "unrolled": solvers.Unrolled(steps=4),
        "implicit": solvers.Implicit(steps=1000),
        "truncated": solvers.Truncated(steps=4, k=2),
    }[backend]
    pool = graphs.make_readout("ea", SIZE, widths=(16, 8, 4), solver=solver, key=getkey())
    graph = padded(random_graphs(5), 16, 32, 5)
    h = jax.random.normal(getkey(), (16, SIZE))

    @eqx.filter_jit
    @eqx.filter_grad
    def grads(pool, h, graph):  # segment ids and masks are traced, as in training
        node_mask, _, graph_mask = graphs.padding_masks(graph)
        ids = graphs.node_graph_ids(graph)
        pooled, aux = graphs.readout(pool, h, ids, 5, node_mask, graph_mask)
        return jnp.sum(pooled[:4] ** 2) + aux

    leaves = jax.tree_util.tree_leaves(eqx.filter(grads(pool, h, graph).energy, eqx.is_array))
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert any(np.any(g != 0) for g in leaves)


def test_bad_names_raise(getkey):
    with pytest.raises(ValueError, match="unknown conv"):
        graphs.GNN("gat", "sum", 1, key=getkey())
    with pytest.raises(ValueError, match="unknown pooling"):
        graphs.make_readout("set2set", 4, key=getkey())
    with pytest.raises(ValueError, match="local"):
        graphs.GNN("gin", "sum", 1, local="max", key=getkey())

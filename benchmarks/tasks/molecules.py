"""Paper section 5.3 / Table 2: GCN and GIN on molecules with sum, attention, PNA, EA, OTKE or
ROTP readouts (and local EA), each EA model trained once per backend in --backends.

Trains the grid on the embedded FreeSolv (no download) at a CPU budget and reports, per
model, the validation and test metric (ogb's Evaluator) at the best validation evaluation
and the median time of a training step relative to the same network with the sum readout
(the analogue of appendix E.2). OTKE and ROTP run their default solvers (the authors'
unrolled Sinkhorn). --dataset ogbg-molpcba --root DIR with the paper's sizes is the paper's
setting. Batch norm: the networks train with batch statistics (over real nodes only); before
every evaluation the running statistics are recomputed by a forward pass over the training
batches without dropout (PyTorch's momentum-0.1 averages, over the final weights).

examples:
  python -m benchmarks molecules
  python -m benchmarks molecules --convs gin --readouts sum ea --backends unrolled implicit
  python -m benchmarks molecules --dataset ogbg-molpcba --root data --node-size 300 \
      --widths 600 300 32 --inner-steps 15 --steps 2000000
"""

import argparse
import dataclasses
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from eqx_agg import graphs

from ..shared import cli, training
from ..shared.data import molecules
from ..shared.results import Results
from ..shared.strategies import BACKENDS

LOWER_IS_BETTER = ("rmse", "mae")
"""ogb metrics where lower is better (the rest, e.g. AP and ROC-AUC, are higher-better)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.parser("molecules", __doc__)
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default=molecules.EMBEDDED,
        help=f"{molecules.EMBEDDED!r} (embedded FreeSolv) or an ogbg-mol* name",
    )
    data.add_argument("--root", default="dataset", help="where ogb finds or downloads datasets")
    data.add_argument(
        "--max-graphs", type=cli.positive_int, default=8, help="graphs per batch (paper: 8)"
    )
    data.add_argument(
        "--max-nodes", type=cli.positive_int, default=128, help="nodes per batch (paper: 1024)"
    )
    data.add_argument(
        "--num-budgets", type=cli.positive_int, default=2, help="padded shapes per run"
    )
    data.add_argument(
        "--subset", type=cli.non_negative_int, default=0,
        help="use only the first N graphs of each split (0: all)",
    )  # fmt: skip
    grid = parser.add_argument_group("grid")
    grid.add_argument(
        "--convs", nargs="+", default=["gcn", "gin"], choices=list(graphs.CONVS),
        help="message-passing layers",
    )  # fmt: skip
    grid.add_argument(
        "--readouts", nargs="+", default=["sum", "attention", "pna", "ea", "otke", "rotp"],
        choices=list(graphs.READOUTS), help="global readouts",
    )  # fmt: skip
    grid.add_argument(
        "--locals", nargs="+", default=["sum"], choices=["sum", "ea"], help="local aggregations"
    )
    grid.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=["unrolled", "implicit", "truncated"],
        help="every model with an EA layer is trained once per backend listed",
    )  # fmt: skip
    model = parser.add_argument_group("model")
    model.add_argument(
        "--node-size", type=cli.positive_int, default=64, help="node width (paper: 300)"
    )
    model.add_argument("--layers", type=cli.positive_int, default=5, help="message-passing layers")
    model.add_argument("--dropout", type=cli.non_negative_float, default=0.5, help="dropout rate")
    model.add_argument(
        "--widths", type=cli.positive_int, nargs="+", default=[128, 64, 16],
        help="EA readout potential (paper: 600 300 32)",
    )  # fmt: skip
    model.add_argument(
        "--local-widths", type=cli.positive_int, nargs="+", default=[64, 64, 16],
        help="local EA potential",
    )  # fmt: skip
    model.add_argument(
        "--local-aux-weight", type=cli.non_negative_float, default=1e-4,
        help="weight of the local EA layers' auxiliary loss",
    )  # fmt: skip
    model.add_argument("--heads", type=cli.positive_int, default=4, help="attention heads")
    model.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="float64 turns on jax_enable_x64 (float32 keeps JAX's current setting)",
    )
    training.add_training_flags(parser, steps=300, lr=1e-3, aux_weight=1.0, eval_every=100)
    training.add_backend_flags(parser, inner_steps=15, truncate_k=2, choose_backend=False)
    parser.add_argument("--out", default=None, help="output folder (default: results/molecules)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run (seconds): one GIN with sum and EA readouts on one batch of 8 graphs",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.subset, args.convs, args.readouts, args.locals = 8, ["gin"], ["sum", "ea"], ["sum"]
        args.node_size, args.layers, args.widths, args.dropout = 16, 2, [16, 16, 8], 0.0
        args.max_nodes, args.num_budgets, args.steps, args.eval_every = 128, 1, 20, 10
        args.backends, args.inner_steps, args.log_every = ["implicit"], [3], 1
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the suite; returns the result records (also written under `--out`)."""
    args = parse_args(argv)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dataset, metric, batching = load(args)
    config = {k: v for k, v in vars(args).items() if k not in {"log", "checkpoint_dir"}}
    config.update(
        num_graphs=len(dataset.graphs),
        split={k: len(v) for k, v in dataset.split.items()},
        split_name=dataset.split_name,
        metric=metric,
        evaluated_as=dataset.name,
    )
    results = Results("molecules", config, args.out)
    histories = {}
    for conv in args.convs:
        for local in args.locals:
            for readout in args.readouts:
                uses_ea = local == "ea" or readout == "ea"
                for backend in args.backends if uses_ea else ["-"]:
                    record, history = _run(
                        args, dataset, batching, conv, local, readout, backend, metric
                    )
                    histories[_label(record)] = history
                    results.add(**record)
    for record in results.records:
        base = next(
            (
                r
                for r in results.records
                if r["conv"] == record["conv"] and r["local"] == "sum" and r["readout"] == "sum"
            ),
            None,
        )
        record["step_vs_sum"] = record["step_ms"] / base["step_ms"] if base else float("nan")
    _plot(results, histories, metric)
    results.add_section(_notes(args, dataset, metric))
    results.write(
        [
            "conv",
            "local",
            "readout",
            "backend",
            f"valid_{metric}",
            f"test_{metric}",
            "best_step",
            "step_ms",
            "step_vs_sum",
            "params",
        ],
        extra={"histories": histories},
    )
    return results.records


def load(args: argparse.Namespace) -> tuple[molecules.MoleculeDataset, str, dict[str, int]]:
    """The data set of `args` (its `--subset`), its ogb metric and the batching flags."""
    dataset = _subset(molecules.load_dataset(args.dataset, args.root), args.subset)
    batching = {
        "max_graphs": args.max_graphs,
        "max_nodes": args.max_nodes,
        "num_budgets": args.num_budgets,
    }
    return dataset, molecules.metric_name(dataset.name), batching


def _subset(dataset: molecules.MoleculeDataset, n: int) -> molecules.MoleculeDataset:
    if n <= 0:
        return dataset
    return dataclasses.replace(dataset, split={k: v[:n] for k, v in dataset.split.items()})


def _label(record: dict[str, Any]) -> str:
    return f"{record['conv']}/{record['local']}/{record['readout']}/{record['backend']}"


@dataclasses.dataclass
class Setup:
    """What training one model needs: `model` is `(GNN, batch-norm state)`; `loss_fn`,
    `next_batch` and `evaluate` as `training.train` takes them (`evaluate` gives the
    dataset's metric on the `valid` and `test` splits)."""

    model: tuple[eqx.Module, eqx.nn.State]
    loss_fn: Any
    next_batch: Any
    evaluate: Any
    params: int
    steps_per_epoch: int


def setup(args, dataset, batching, conv, local, readout, solver) -> Setup:
    """The model of one grid cell (`solver`: the EA layers' backend, None without any),
    seeded by `--seed`, and its batches, loss and evaluation."""
    key = jax.random.PRNGKey(args.seed)
    train_index = dataset.split["train"]
    regression = dataset.task_type == "regression"
    labels = dataset.labels[train_index]
    shift = np.nanmean(labels, 0) if regression else np.zeros(dataset.num_tasks)
    scale = np.nanstd(labels, 0) if regression else np.ones(dataset.num_tasks)
    sizes = np.array([dataset.graphs[i]["num_nodes"] for i in train_index])
    model, state = eqx.nn.make_with_state(graphs.GNN)(
        conv,
        readout,
        dataset.num_tasks,
        size=args.node_size,
        num_layers=args.layers,
        dropout=args.dropout,
        local=local,
        solver=solver,
        widths=args.widths,
        heads=args.heads,
        pna_delta=float(np.mean(np.log(sizes + 1))),
        local_solver=solver,
        local_widths=args.local_widths,
        aux_weight=args.aux_weight,
        local_aux_weight=args.local_aux_weight,
        key=key,
    )
    params = training.count_parameters(model)
    epoch_batches = {}

    def train_batches(epoch):
        if epoch not in epoch_batches:
            epoch_batches.clear()
            rng = np.random.default_rng([args.seed, epoch])
            epoch_batches[epoch] = list(
                molecules.batches(dataset, train_index, rng=rng, **batching)
            )
        return epoch_batches[epoch]

    steps_per_epoch = len(train_batches(0))

    def next_batch(step):
        batch = train_batches(step // steps_per_epoch)[step % steps_per_epoch]
        return batch.graph, (batch.labels - shift) / scale

    def loss_fn(trained, batch, key):
        graph, targets = batch
        predictions, aux, _ = trained[0](graph, trained[1], key=key)
        known = ~jnp.isnan(targets)
        targets = jnp.where(known, targets, 0)
        if regression:
            losses = (predictions - targets) ** 2
        else:
            losses = optax.sigmoid_binary_cross_entropy(predictions, targets)
        task = jnp.sum(jnp.where(known, losses, 0)) / jnp.maximum(jnp.sum(known), 1)
        return task + aux, {"task_loss": task, "aux_loss": aux}

    fixed = {
        name: list(molecules.batches(dataset, dataset.split[name], **batching))
        for name in ("train", "valid", "test")
    }
    refresh = eqx.filter_jit(lambda m, s, g: m(g, s)[2])
    predict = eqx.filter_jit(lambda m, s, g: m(g, s, inference=True)[0])

    def evaluate(trained, step):
        trained_model, trained_state = trained
        for batch in fixed["train"]:
            trained_state = refresh(trained_model, trained_state, _device(batch.graph))
        out = {}
        for name in ("valid", "test"):
            rows, preds = [], []
            for batch in fixed[name]:
                real = batch.index >= 0
                p = np.asarray(predict(trained_model, trained_state, _device(batch.graph)))
                preds.append(p[real] * scale + shift)
                rows.append(batch.labels[real])
            out[name] = molecules.evaluate(
                dataset.name, np.concatenate(rows), np.concatenate(preds)
            )
        return out

    return Setup((model, state), loss_fn, next_batch, evaluate, params, steps_per_epoch)


def _run(args, dataset, batching, conv, local, readout, backend, metric):
    """Train one model; return its record and its training history."""
    solver = None
    if backend != "-":
        namespace = argparse.Namespace(**{**vars(args), "backend": [backend]})
        solver = training.backend_from_args(namespace)
    run = setup(args, dataset, batching, conv, local, readout, solver)
    config = training.config_from_args(args, log_path=None, checkpoint_dir=None, resume=False)
    config = dataclasses.replace(config, data_parallel=False, log_every=1)
    label = f"{conv}/{local}/{readout}/{backend}"
    print(
        f"training {label}: {run.params} parameters, {run.steps_per_epoch} steps per epoch",
        flush=True,
    )
    start = time.perf_counter()
    _, history = training.train(run.model, run.loss_fn, run.next_batch, config, run.evaluate)
    seconds = time.perf_counter() - start
    evals = history["eval"]
    pick = min if metric in LOWER_IS_BETTER else max
    best = pick(evals, key=lambda r: r["valid"])
    record = {
        "conv": conv,
        "local": local,
        "readout": readout,
        "backend": backend,
        f"valid_{metric}": best["valid"],
        f"test_{metric}": best["test"],
        "best_step": best["step"],
        "step_ms": 1e3 * _median_step_seconds(history["train"], config.eval_every),
        "params": run.params,
        "first_loss": history["train"][0]["task_loss"],
        "last_loss": history["train"][-1]["task_loss"],
        "seconds": seconds,
    }
    return record, history


def _device(graph):
    return jax.tree_util.tree_map(jnp.asarray, graph)


def _median_step_seconds(records: list[dict], eval_every: int) -> float:
    """Median wall time of a training step from the loop's cumulative `seconds` (one record
    per step): steps that ran an evaluation are left out; the median ignores the few steps
    that compiled a new batch shape."""
    times = np.diff([0.0] + [r["seconds"] for r in records])
    steps = np.array([r["step"] for r in records])
    after_eval = np.isin(steps - 1, steps[steps % eval_every == 0])
    keep = (steps % eval_every != 0) & ~after_eval
    return float(np.median(times[keep] if keep.any() else times))


def _plot(results: Results, histories: dict, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = results.records
    labels = [_label(r) for r in records]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 0.45 * len(records) + 2))
    y = np.arange(len(records))
    ax1.barh(y - 0.2, [r[f"valid_{metric}"] for r in records], 0.4, label="valid")
    ax1.barh(y + 0.2, [r[f"test_{metric}"] for r in records], 0.4, label="test")
    ax1.set_yticks(y, labels)
    ax1.invert_yaxis()
    ax1.set_xlabel(f"{metric} at best validation")
    ax1.legend()
    ax2.barh(y, [r["step_vs_sum"] for r in records])
    ax2.axvline(1.0, color="k", lw=0.8)
    ax2.axvline(1.5, color="r", ls="--", lw=0.8, label="1.5× Sum")
    ax2.set_yticks(y, [])
    ax2.invert_yaxis()
    ax2.set_xlabel("training step time / Sum readout's")
    ax2.legend()
    for label, history in histories.items():
        evals = history["eval"]
        ax3.plot([r["step"] for r in evals], [r["valid"] for r in evals], label=label)
    ax3.set_xlabel("training step")
    ax3.set_ylabel(f"validation {metric}")
    ax3.legend(fontsize=6)
    fig.tight_layout()
    results.save_figure(
        fig,
        "molecules",
        f"Left: validation and test {metric} at the best validation evaluation. Middle: median "
        "training-step time relative to the same network with Sum readout. Right: validation "
        f"{metric} during training.",
    )
    plt.close(fig)


def _notes(args, dataset, metric) -> str:
    return (
        f"Dataset `{args.dataset}` scored as `{dataset.name}` ({metric}, ogb `Evaluator`); "
        f"split: {dataset.split_name}, sizes "
        f"{ {k: len(v) for k, v in dataset.split.items()} }. Each model is trained for "
        f"{args.steps} Adam steps (lr {args.lr}), evaluated every {args.eval_every}; the "
        "validation and test metric are taken at the best validation evaluation. `step_ms` is "
        "the median wall time of one training step (loss, gradient, Adam update, host "
        "transfer of the batch); `step_vs_sum` divides it by the Sum-readout model of the "
        "same conv. Timings on a shared CPU are noisy."
    )


if __name__ == "__main__":
    main()

"""Median estimation (paper section 5.1, appendix D.1): predict the median of 100 numbers.

Sets are drawn on the fly (uniform, gamma, normal). Baselines encode each number with a
ResNet [w, w, D], pool (sum, or 4-head attention with learned queries) and decode with
[128, 1] (the paper's [D, 128, 1]); EA minimises a ResNet potential [w, w, 1] on D + 1
inputs for 5 inner steps and decodes the same way. The paper uses w = 256 and 10^7 steps;
the defaults are a CPU budget. Writes the MSE on a fixed held-out sample against D (the
analogue of Figure 3).

examples:
  python -m benchmarks median
  python -m benchmarks median --dims 1 --models sum ea --steps 1000
  python -m benchmarks median --width 256 --steps 100000 --eval-sets 80000 --seed 1
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from ..shared import cli, training
from ..shared.data.median import median_sets
from ..shared.results import Results
from .models import LABELS, POOLINGS, SetModel, median_model

ABOUT = (
    "Median estimation (paper 5.1): held-out mean squared error of the predicted median of "
    "100 numbers, per pooling and set-embedding size D, after the same number of Adam steps "
    "(`mse`: at the end; `best_mse`: at the best evaluation)."
)


def build_model(name: str, dim: int, width: int, backend, *, key) -> SetModel:
    """The section 5.1 model with pooling `name` and set embedding size `dim`."""
    backend = backend if name == "ea" else None  # the flags choose EA's backend
    return median_model(
        name, dim, widths=(width, width, 1), decoder_widths=(128,), backend=backend, key=key
    )


def make_loss(aux_weight: float):
    """Square loss on the median, plus `aux_weight ×` the EA auxiliary loss."""

    def loss_fn(model, batch, key):
        x, median = batch
        prediction, aux = jax.vmap(model)(x)
        mse = jnp.mean((prediction[:, 0] - median) ** 2)
        return mse + aux_weight * jnp.mean(aux), {"mse": mse, "aux": jnp.mean(aux)}

    return loss_fn


@eqx.filter_jit
def _batch_mse(model, x, median):
    prediction, _ = jax.vmap(model)(x)
    return jnp.sum((prediction[:, 0] - median) ** 2)


def held_out_mse(model, x, median, chunk: int = 1024) -> float:
    """MSE over a fixed sample, in chunks of `chunk` sets."""
    total = sum(
        float(_batch_mse(model, x[i : i + chunk], median[i : i + chunk]))
        for i in range(0, len(x), chunk)
    )
    return total / len(x)


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("median", __doc__)
    group = parser.add_argument_group("task")
    group.add_argument(
        "--dims", type=cli.positive_int, nargs="+", default=[1, 2, 4, 8],
        help="set embedding sizes D",
    )  # fmt: skip
    group.add_argument(
        "--models", nargs="+", choices=POOLINGS, default=["sum", "attention", "ea"],
        help="the poolings compared",
    )  # fmt: skip
    group.add_argument(
        "--width", type=cli.positive_int, default=64, help="hidden width w (paper: 256)"
    )
    group.add_argument("--batch-size", type=cli.positive_int, default=32, help="sets per step")
    group.add_argument("--set-size", type=cli.positive_int, default=100, help="numbers per set")
    group.add_argument(
        "--eval-sets", type=cli.positive_int, default=2048, help="held-out sample size"
    )
    group.add_argument(
        "--dtype", choices=["float32", "float64"], default="float32", help="floating-point type"
    )
    group.add_argument("--out", default="results/median", help="output folder")
    group.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, few steps")
    training.add_training_flags(parser, steps=3000, lr=1e-3, lr_schedule="cosine", eval_every=500)
    training.add_backend_flags(parser, inner_steps=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.dims, args.width, args.batch_size = [2], 16, 8
        args.set_size, args.eval_sets = 20, 64
        args.steps, args.eval_every = min(args.steps, 30), 10
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    run(args)


def run(args: argparse.Namespace) -> Results:
    """Train every (pooling, D) pair of `args`; write the results and the figure."""
    dims, models = args.dims, args.models
    config = {k: (str(v) if v is not None else None) for k, v in vars(args).items()}
    results = Results("median", config, args.out, ABOUT)
    eval_key = jax.random.PRNGKey(10_000 + args.seed)  # a sample no training step draws
    x_eval, median_eval = median_sets(eval_key, args.eval_sets, args.set_size)
    data_key = jax.random.PRNGKey(args.seed)
    histories = {}

    def next_batch(step):
        return median_sets(jax.random.fold_in(data_key, step), args.batch_size, args.set_size)

    for name in models:
        for dim in dims:
            tag = f"{name}-D{dim}"
            model = build_model(
                name,
                dim,
                args.width,
                training.backend_from_args(args),
                key=jax.random.PRNGKey(args.seed + 1),
            )
            params = training.count_parameters(model)
            config = training.run_config(args, tag)
            print(f"\n{LABELS[name]}, D = {dim} ({params} parameters)")
            start = time.perf_counter()
            model, history = training.train(
                model,
                make_loss(args.aux_weight),
                next_batch,
                config,
                evaluate=lambda model, step: {"mse": held_out_mse(model, x_eval, median_eval)},
            )
            seconds = time.perf_counter() - start
            evals = [record["mse"] for record in history["eval"]]
            histories[tag] = history
            results.add(
                model=name,
                D=dim,
                params=params,
                steps=args.steps,
                mse=evals[-1],
                best_mse=min(evals),
                train_seconds=seconds,
            )
    _plot(results, models, dims, histories)
    results.write(["model", "D", "params", "steps", "mse", "best_mse", "train_seconds"])
    return results


def _plot(results: Results, models, dims, histories) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, curves) = plt.subplots(1, 2, figsize=(10, 4))
    for name in models:
        rows = [r for r in results.records if r["model"] == name]
        ax.plot([r["D"] for r in rows], [r["mse"] for r in rows], "o-", label=LABELS[name])
        ax.plot([r["D"] for r in rows], [r["best_mse"] for r in rows], "o:", alpha=0.4, c="gray")
        tag = f"{name}-D{min(dims)}"
        evals = histories[tag]["eval"]
        curves.plot([e["step"] for e in evals], [e["mse"] for e in evals], label=LABELS[name])
    ax.set(xscale="log", yscale="log", xlabel="set embedding size D", ylabel="held-out MSE")
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.minorticks_off()
    ax.set_title("Median estimation (final: solid; best eval: dotted)")
    ax.legend()
    curves.set(yscale="log", xlabel="training step", ylabel="held-out MSE")
    curves.set_title(f"Training curves at D = {min(dims)}")
    curves.legend()
    results.save_figure(fig, "median_mse_vs_dim", "Held-out MSE of the median against D.")
    plt.close(fig)


if __name__ == "__main__":
    main()

"""Median estimation (paper section 5.1, appendix D.1): predict the median of 100 numbers.

`python -m benchmarks median [--dims 1,2,4,8] [--models sum,attention,ea] [--steps N] ...`

Sets are drawn on the fly (uniform, gamma, normal; `benchmarks.data.median`). Baselines
encode each number with a ResNet `[w, w, D]`, pool (Sum or 4-head attention with learned
queries) and decode with `[128, 1]` (the paper's `[D, 128, 1]`); EA minimises a ResNet
potential `[w, w, 1]` on `D + 1` inputs for 5 inner steps and decodes the same way. The
paper uses `w = 256` and 10^7 steps; the defaults here are a CPU budget (see `--help`).
Writes MSE on a fixed held-out sample against `D` (the analogue of Figure 3).
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp

import eqx_agg

from . import training
from ._results import Results
from .data.median import median_sets
from .set_models import POOLINGS, SetModel, make_pool

LABELS = {"sum": "Sum (Deep Sets)", "attention": "Multi-head attention", "ea": "Equilibrium Agg."}


def build_model(name: str, dim: int, width: int, backend, *, key) -> SetModel:
    """The section 5.1 model with pooling `name` and set embedding size `dim`."""
    k_encoder, k_pool, k_decoder = jax.random.split(key, 3)
    encoder = None if name == "ea" else eqx_agg.ResidualMLP(1, (width, width, dim), key=k_encoder)
    pool = make_pool(
        name, dim, potential_in=1, potential_widths=(width, width, 1), backend=backend, key=k_pool
    )
    return SetModel(encoder, pool, eqx_agg.ResidualMLP(dim, (128, 1), key=k_decoder))


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
    parser = argparse.ArgumentParser(prog="python -m benchmarks median", description=__doc__)
    parser.add_argument("--dims", default="1,2,4,8", help="set embedding sizes D to sweep")
    parser.add_argument("--models", default=",".join(POOLINGS), help="comma list of poolings")
    parser.add_argument("--width", type=int, default=64, help="hidden width w (paper: 256)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--set-size", type=int, default=100)
    parser.add_argument("--eval-sets", type=int, default=2048, help="held-out sample size")
    parser.add_argument(
        "--dtype", choices=["float32", "float64"], default="float32", help="float64: enable x64"
    )
    parser.add_argument("--out", default="results/median")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, few steps")
    training.add_training_flags(parser, steps=3000, lr=1e-3, lr_schedule="cosine", eval_every=500)
    training.add_backend_flags(parser, inner_steps=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.dims, args.width, args.batch_size = "2", 16, 8
        args.set_size, args.eval_sets = 20, 64
        args.steps, args.eval_every = min(args.steps, 30), 10
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    run(args)


def run(args: argparse.Namespace) -> Results:
    """Train every (pooling, D) pair of `args`; write the results and the figure."""
    dims = [int(d) for d in args.dims.split(",")]
    models = [m.strip() for m in args.models.split(",")]
    config = {k: (str(v) if v is not None else None) for k, v in vars(args).items()}
    results = Results("median", config, args.out)
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

"""Time-to-accuracy: does a cheaper backend reach Unrolled's held-out error sooner in training?

Trains the median task's EA model (paper 5.1) with each backend, over several seeds, on the
same batches, and records the held-out MSE against training wall-clock (compilation included,
evaluations excluded) and against steps. The paper's Unrolled(T) is the reference: its final
MSE, averaged over the seeds, plus one standard deviation across seeds (the seed noise) is
the target; a backend's time-to-accuracy is the training time at its first evaluation at or
below the target, the median over the seeds, a seed that never gets there counting as
infinitely slow (so a backend reaching it in fewer than half the seeds has none).
`--train-inner-steps` adds the paper's E.2 variant: Unrolled trained with fewer inner steps
and evaluated with T.

examples:
  python -m benchmarks time-to-accuracy
  python -m benchmarks time-to-accuracy --dims 1 --seeds 0 1 2 --steps 2000
  python -m benchmarks time-to-accuracy --inner-steps 10 --train-inner-steps 2 5
"""

import argparse
import math
import statistics
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import eqx_agg

from ..shared import cli, training
from ..shared.data.median import median_sets
from ..shared.factories import BACKENDS, make_backend
from ..shared.results import Results, progress, target, targets_section
from ..tasks import median
from . import memory, problem

ABOUT = (
    "Time-to-accuracy of each backend in training the median model: `mse` is the held-out MSE "
    "after all steps (mean ± std over seeds), `reached` how many seeds got to Unrolled's "
    "final MSE + its seed std, `time_to_target_s` the median over seeds of the training "
    "seconds to get there (none if fewer than half the seeds did) "
    "(`vs_unrolled`: over Unrolled's own), `steps_per_s` the training throughput after "
    "compilation, `total_MB` the compiled memory of one training step, `residual` the median "
    "inner residual max|∇_y E| of the trained model on held-out sets (at the evaluation T)."
)


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("time-to-accuracy", __doc__)
    group = parser.add_argument_group("task")
    group.add_argument(
        "--dims", type=cli.positive_int, nargs="+", default=[1, 4], help="set embedding sizes D"
    )
    group.add_argument("--seeds", type=cli.non_negative_int, nargs="+", default=[0, 1, 2],
                       help="training seeds (the seed noise needs >= 2)")  # fmt: skip
    group.add_argument("--width", type=cli.positive_int, default=64, help="hidden width w")
    group.add_argument("--batch-size", type=cli.positive_int, default=32, help="sets per step")
    group.add_argument("--set-size", type=cli.positive_int, default=100, help="numbers per set")
    group.add_argument(
        "--eval-sets", type=cli.positive_int, default=2048, help="held-out sample size"
    )
    group.add_argument("--steps", type=cli.positive_int, default=1500, help="Adam steps")
    group.add_argument("--lr", type=cli.positive_float, default=1e-3, help="Adam peak lr (cosine)")
    group.add_argument(
        "--eval-every", type=cli.positive_int, default=100, help="steps between evaluations"
    )
    group.add_argument("--out", default="results/time-to-accuracy", help="output folder")
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    group.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, few steps")
    group = parser.add_argument_group("backends")
    group.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
        help="the backends compared (Unrolled is always the reference)",
    )  # fmt: skip
    group.add_argument(
        "--inner-steps", type=cli.positive_int, default=5,
        help="inner steps T of Unrolled and Truncated (the median task's)",
    )  # fmt: skip
    group.add_argument(
        "--truncate-k", type=cli.positive_int, default=2, help="Truncated's taped steps k"
    )
    group.add_argument(
        "--implicit-steps", type=cli.positive_int, default=100,
        help="Implicit's cap on forward steps (it stops at its tolerance)",
    )  # fmt: skip
    group.add_argument(
        "--train-inner-steps", type=cli.positive_int, nargs="+", default=[2],
        help="Unrolled trained with these T, evaluated with --inner-steps",
    )  # fmt: skip
    return parser


QUICK = dict(dims=[1], seeds=[0, 1], width=16, batch_size=8, set_size=20, eval_sets=64,
             steps=20, eval_every=5, implicit_steps=50)  # fmt: skip


def variants(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The trained configurations: Unrolled(T) first (the reference), the other backends,
    then Unrolled trained with each `T_train < T` and evaluated with T. `T_train` is the
    training steps (Implicit: its cap), `T_eval` the evaluation's (None: as trained)."""
    T = args.inner_steps
    out = [dict(variant=f"unrolled T={T}", backend="unrolled", T_train=T, T_eval=None)]
    for name in args.backends:
        if name == "implicit":
            out.append(dict(variant="implicit", backend=name, T_train=args.implicit_steps,
                            T_eval=None))  # fmt: skip
        elif name == "truncated":
            k = min(args.truncate_k, T)
            out.append(dict(variant=f"truncated k={k}", backend=name, T_train=T, T_eval=None))
    for steps in args.train_inner_steps:
        if steps < T:
            out.append(dict(variant=f"unrolled T={steps}→{T}", backend="unrolled",
                            T_train=steps, T_eval=T))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> Results:
    """Run the benchmark; write `results/time-to-accuracy/`; return the `Results`."""
    args = _parser().parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    results = Results("time-to-accuracy", problem.config_of(args), args.out, ABOUT)
    x_eval, median_eval = median_sets(jax.random.PRNGKey(10_000), args.eval_sets, args.set_size)
    runs = [(dim, v, seed) for dim in args.dims for v in variants(args) for seed in args.seeds]
    curves: dict[tuple[int, str], list[list[dict[str, Any]]]] = {}
    extras: dict[tuple[int, str], dict[str, Any]] = {}
    for dim, variant, seed in progress(runs, "time-to-accuracy", quiet=args.quiet):
        model, config = _setup(args, dim, variant, seed)
        data_key = jax.random.PRNGKey(seed)

        def next_batch(step, data_key=data_key):
            return median_sets(jax.random.fold_in(data_key, step), args.batch_size, args.set_size)

        def evaluate(model, step):
            return {"mse": median.held_out_mse(model, x_eval, median_eval)}

        trained, history = training.train(
            model, median.make_loss(config.aux_weight), next_batch, config, evaluate
        )
        curves.setdefault((dim, variant["variant"]), []).append(history["eval"])
        if (dim, variant["variant"]) not in extras:
            x, labels = next_batch(0)
            compiled, _ = problem.compiled_loss_and_grad(model, x, labels)
            steps = config.eval_inner_steps
            evaluated = trained if steps is None else eqx_agg.with_inner_steps(trained, steps)
            stats = problem.solve_stats(evaluated, x_eval[: min(256, len(x_eval))])
            extras[dim, variant["variant"]] = dict(
                total_MB=memory.compiled_megabytes(compiled)["total_MB"],
                residual=float(jnp.median(stats.grad_max_norm)),
            )
    for dim in args.dims:
        _summarise(results, dim, [v["variant"] for v in variants(args)], curves, extras)
    targets = targets_of(results.records)
    _plot(results, args.dims, curves)
    results.add_section(targets_section(targets))
    results.write(
        ["D", "variant", "mse", "mse_std", "reached", "time_to_target_s", "vs_unrolled",
         "steps_per_s", "total_MB", "residual"],
        extra={"targets": targets, "curves": {f"{d}/{v}": c for (d, v), c in curves.items()}},
    )  # fmt: skip
    return results


def _setup(args, dim: int, variant: dict[str, Any], seed: int):
    """The seed's model with the variant's backend, and its training configuration."""
    name, steps = variant["backend"], variant["T_train"]
    k = min(args.truncate_k, steps) if name == "truncated" else None
    backend = make_backend(name, steps, k, throw=False)
    model = median.build_model("ea", dim, args.width, backend, key=jax.random.PRNGKey(seed + 1))
    config = training.TrainConfig(
        steps=args.steps, lr=args.lr, lr_schedule="cosine", eval_every=args.eval_every,
        log_every=args.steps, seed=seed, quiet=True, data_parallel=False,
        eval_inner_steps=variant["T_eval"],
    )  # fmt: skip
    return model, config


def _summarise(results: Results, dim: int, names: list[str], curves, extras) -> None:
    """One row per variant at this D (the first name is the Unrolled reference)."""
    finals = {name: [run[-1]["mse"] for run in curves[dim, name]] for name in names}
    reference = finals[names[0]]
    noise = statistics.stdev(reference) if len(reference) > 1 else 0.0
    goal = statistics.mean(reference) + noise
    reference_time = None
    for name in names:
        times = [_time_to(run, goal) for run in curves[dim, name]]
        reached = [t for t in times if t is not None]
        # a seed that never reaches the target counts as infinitely slow
        time_to = statistics.median(math.inf if t is None else t for t in times)
        time_to = None if math.isinf(time_to) else time_to
        if name == names[0]:
            reference_time = time_to
        results.add(
            D=dim,
            variant=name,
            mse=statistics.mean(finals[name]),
            mse_std=statistics.stdev(finals[name]) if len(finals[name]) > 1 else None,
            reached=f"{len(reached)}/{len(times)}",
            time_to_target_s=time_to,
            vs_unrolled=None if time_to is None or not reference_time else time_to / reference_time,
            steps_per_s=statistics.median(_throughput(run) for run in curves[dim, name]),
            target_mse=goal,
            **extras[dim, name],
        )


def _time_to(run: list[dict[str, Any]], goal: float) -> float | None:
    """Training seconds at the first evaluation with MSE at or below `goal`."""
    return next((r["train_seconds"] for r in run if r["mse"] <= goal), None)


def _throughput(run: list[dict[str, Any]]) -> float:
    """Steps per second between the first evaluation after step 0 (compilation done) and the
    last."""
    first, last = run[1], run[-1]
    if last["step"] == first["step"]:
        return last["step"] / last["train_seconds"]
    return (last["step"] - first["step"]) / (last["train_seconds"] - first["train_seconds"])


def targets_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per D: some cheaper variant reaches Unrolled's MSE in at most half its time."""
    targets = []
    for dim in dict.fromkeys(r["D"] for r in records):
        rows = [r for r in records if r["D"] == dim]
        ratios = [r["vs_unrolled"] for r in rows[1:] if r["vs_unrolled"] is not None]
        best = min(ratios) if ratios else float("inf")
        reason = (
            "no cheaper variant reached Unrolled's final MSE within the budget"
            if not ratios
            else "the cheaper variants' faster steps did not make up for their slower progress"
        )
        targets.append(
            target(
                f"D={dim}: a cheaper backend reaches Unrolled's MSE in <= 0.5× its time",
                best,
                best <= 0.5,
                reason,
            )  # fmt: skip
        )
    return targets


def _plot(results: Results, dims: list[int], curves) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(dims), 2, figsize=(11, 4 * len(dims)), squeeze=False)
    for (time_ax, step_ax), dim in zip(axes, dims, strict=True):
        goal = next(r["target_mse"] for r in results.records if r["D"] == dim)
        for (d, name), runs in curves.items():
            if d != dim:
                continue
            steps = [r["step"] for r in runs[0]]
            mse = np.mean([[r["mse"] for r in run] for run in runs], axis=0)
            seconds = np.mean([[r["train_seconds"] for r in run] for run in runs], axis=0)
            time_ax.plot(seconds, mse, "o-", ms=3, label=name)
            step_ax.plot(steps, mse, "o-", ms=3, label=name)
        for ax, xlabel in ((time_ax, "training wall-clock (s)"), (step_ax, "training step")):
            ax.axhline(goal, color="gray", ls=":", label="Unrolled's final MSE + seed std")
            ax.set(yscale="log", xlabel=xlabel, ylabel="held-out MSE (mean over seeds)")
            ax.set_title(f"Median estimation, D = {dim}")
        time_ax.legend(fontsize=8)
    fig.tight_layout()
    results.save_figure(
        fig, "time_to_accuracy", "Held-out MSE against training time and steps, per backend."
    )
    plt.close(fig)


if __name__ == "__main__":
    main()

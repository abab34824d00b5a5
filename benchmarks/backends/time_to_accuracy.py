"""Time-to-accuracy: does a cheaper backend reach Unrolled's held-out metric sooner in training?

Trains a task's EA model with each backend, over several seeds, on the same batches, and
records the held-out metric against training wall-clock (compilation included, evaluations
excluded) and against steps. Tasks (`--task`): median estimation (paper 5.1, held-out MSE,
per D), class counting (5.2, the embedded digits, test accuracy) and molecules (5.3, the
embedded FreeSolv with an EA readout, validation RMSE, per GCN/GIN), each at its own
benchmark's defaults. The paper's Unrolled(T) is the reference: the median over seeds of its
final metric is the target (with a bootstrap interval: how far other seeds could move it); a
backend's time-to-accuracy is the training time at its first evaluation that meets the
target, the median over the seeds, a seed that never gets there counting as infinitely slow
(so a backend reaching it in fewer than half the seeds has none). The goal: some variant
reaches it within half of Unrolled's time on at least 4 in 5 of its seeds.
`--train-inner-steps` adds the paper's E.2 variant: Unrolled (or each of `--short-variants`)
trained with fewer inner steps and evaluated with T.

examples:
  python -m benchmarks time-to-accuracy
  python -m benchmarks time-to-accuracy --dims 1 --seeds 0 1 2 --steps 2000
  python -m benchmarks time-to-accuracy --inner-steps 10 --train-inner-steps 2 5
  python -m benchmarks time-to-accuracy --dims 1 --variants unrolled --train-inner-steps 2 \\
      --short-variants checkpointed-contraction
  python -m benchmarks time-to-accuracy --task molecules --convs gcn gin --steps 600
  python -m benchmarks time-to-accuracy --task counting --steps 1500 --eval-every 100
"""

import argparse
import dataclasses
import math
import statistics
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import eqx_agg
import solvers

from ..shared import cli, compiled, strategies, training
from ..shared.results import Results, progress, target, targets_section
from . import memory, problem
from .training_tasks import TASKS, Run

ABOUT = (
    "Time-to-accuracy of each backend in training a task's EA model: `metric` is the held-out "
    "metric after all steps (mean ± std over seeds), `target` the median over seeds of "
    "Unrolled's final metric (`target_interval`: its 95 % bootstrap interval over the seeds), "
    "`reached` how many seeds got to the target, `time_to_target_s` the median over "
    "seeds of the training seconds to get there (none if fewer than half the seeds did) "
    "(`vs_unrolled`: over Unrolled's own; compilation included), `seeds_within_half` how many "
    "seeds got there in at most half of Unrolled's time, `steps_to_target` the median "
    "step of that evaluation, `steady_vs_unrolled` the ratio of steps_to_target / steps_per_s "
    "to Unrolled's (the time to target at steady throughput, compilation excluded: what "
    "counts in a long run), `steps_per_s` the training throughput after compilation, "
    "`total_MB` the compiled memory of one training step, `residual` the median "
    "inner residual max|∇_y E| of the trained model on held-out sets (at the evaluation T), "
    "`converged` the fraction of those sets whose forward met its tolerance (Unrolled's: "
    "the paper's gtol 1e-3 within T steps), `converged_in_training` that fraction at every "
    "evaluation after step 0, averaged over evaluations and seeds (how often the forward "
    "the backend differentiated was an argmin while the model trained)."
)


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("time-to-accuracy", __doc__)
    group = parser.add_argument_group("task")
    group.add_argument("--task", choices=list(TASKS), default="median", help="the task trained")
    group.add_argument(
        "--dims", type=cli.positive_int, nargs="+", default=[1, 4],
        help="median: set embedding sizes D",
    )  # fmt: skip
    group.add_argument(
        "--convs", nargs="+", choices=["gcn", "gin"], default=["gcn", "gin"],
        help="molecules: graph convolutions",
    )  # fmt: skip
    group.add_argument("--width", type=cli.positive_int, default=64, help="median: width w")
    group.add_argument(
        "--batch-size", type=cli.positive_int, default=32, help="median: sets per step"
    )
    group.add_argument(
        "--set-size", type=cli.positive_int, default=100, help="median: numbers per set"
    )
    group.add_argument(
        "--eval-sets", type=cli.positive_int, default=2048, help="median: held-out sets"
    )
    group = parser.add_argument_group("training")
    group.add_argument("--seeds", type=cli.non_negative_int, nargs="+", default=[0, 1, 2, 3, 4],
                       help="training seeds (the target is the median over them)")  # fmt: skip
    group.add_argument("--steps", type=cli.positive_int, default=1500, help="Adam steps")
    group.add_argument("--lr", type=cli.positive_float, default=1e-3, help="Adam peak lr (cosine)")
    group.add_argument(
        "--eval-every", type=cli.positive_int, default=100, help="steps between evaluations"
    )
    group.add_argument("--out", default="results/time-to-accuracy", help="output folder")
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    group.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, few steps")
    group = parser.add_argument_group("strategies")
    group.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(DEFAULT_VARIANTS),
        help="the strategies trained (unrolled, the paper's, is always the reference): "
        + "; ".join(f"{name}: {v.about}" for name, v in VARIANTS.items()),
    )  # fmt: skip
    group.add_argument(
        "--inner-steps", type=cli.positive_int, default=None,
        help="inner steps T of Unrolled, Checkpointed and Truncated (default: the task's: "
        "median 5, counting 10, molecules 15)",
    )  # fmt: skip
    group.add_argument(
        "--truncate-k", type=cli.positive_int, default=2, help="Truncated's taped steps k"
    )
    group.add_argument(
        "--implicit-steps", type=cli.positive_int, default=100,
        help="the forward's cap under Implicit and Phantom (they stop at the tolerance)",
    )  # fmt: skip
    group.add_argument(
        "--min-regularisation", type=cli.positive_float, default=0.05,
        help="the -floor variants' floor under the potential's regulariser strength "
        "c + softplus(λ) (it starts at 0.1 in every task)",
    )  # fmt: skip
    group.add_argument(
        "--contraction-weight", type=cli.positive_float, default=1e4,
        help="the -contraction variants' weight of the contraction penalty in the EA "
        "layers' auxiliary loss, which the task weighs (1e-4 on median and counting: 1e4 "
        "puts it at 1 in the loss; the molecule readout's is 1: pass 1 there)",
    )  # fmt: skip
    group.add_argument(
        "--contraction-subset", type=cli.positive_int, default=1,
        help="the -contraction variants penalise 1 in K of each batch's sets (median and "
        "counting), at K× --contraction-weight, the others skipping its cost (1: every set)",
    )  # fmt: skip
    group.add_argument(
        "--train-inner-steps", type=cli.positive_int, nargs="*", default=[2],
        help="Unrolled (or each of --short-variants) trained with these T (< --inner-steps; "
        "none: the flag alone), evaluated with --inner-steps",
    )  # fmt: skip
    group.add_argument(
        "--short-variants", nargs="+", choices=[n for n, v in VARIANTS.items() if v.has_T],
        default=["unrolled"],
        help="the variants trained with each --train-inner-steps (those with inner steps T)",
    )  # fmt: skip
    return parser


@dataclasses.dataclass(frozen=True)
class Variant:
    """A strategy the benchmark trains: its backend from the parsed flags (T: the task's
    `--inner-steps`), what it is, the weight of eq. 5's auxiliary loss in its training
    loss (None: the task's own: median 1e-4, counting 1e-4, molecules 1), and `edit`, a
    change to the built run before training (flags, `Run` -> `Run`). `has_T`: its
    backend runs `--inner-steps` steps (not to a tolerance), so it can train with fewer."""

    backend: Callable[[argparse.Namespace], solvers.AbstractBackend]
    about: str
    aux_weight: float | None = None
    edit: Callable[[argparse.Namespace, Run], Run] | None = None
    has_T: bool = True


def _truncated(a: argparse.Namespace) -> solvers.AbstractBackend:
    """Truncated(T, --truncate-k), k at most T."""
    return strategies.make_backend("truncated", a.inner_steps, k=a.truncate_k)


def _implicit(a: argparse.Namespace) -> solvers.AbstractBackend:
    """Implicit with the layer's forward, capped at --implicit-steps."""
    return solvers.Implicit(a.implicit_steps)


def _floored(a: argparse.Namespace, run: Run) -> Run:
    """Every `Neural` potential of the model with the floor `--min-regularisation` under its
    regulariser's strength, the strength itself unchanged at the start."""
    floor = a.min_regularisation
    model = _replace_each(
        run.model, eqx_agg.energies.Neural, lambda e: e.with_min_regularisation(floor), "-floor"
    )
    return dataclasses.replace(run, model=model)


def _contracting(a: argparse.Namespace, run: Run) -> Run:
    """Every EA layer of the model with the contraction penalty at `--contraction-weight` in
    its auxiliary loss; with `--contraction-subset K > 1`, on the first `b // K` sets of
    each batch of `b` only, weighted `b / (b // K)`× (the same expected penalty, the batches
    being random draws), the other sets solved without its cost."""
    weight, subset = a.contraction_weight, a.contraction_subset
    model = _with_contraction_weight(run.model, weight)
    if subset == 1:
        return dataclasses.replace(run, model=model)
    loss_fn = run.loss_fn

    def penalising_a_subset(model, batch, key):
        size = len(jax.tree_util.tree_leaves(batch)[0])
        share = max(size // subset, 1)
        if share == size:
            return loss_fn(model, batch, key)
        head, tail = (jax.tree_util.tree_map(lambda v: v[:share], batch),
                      jax.tree_util.tree_map(lambda v: v[share:], batch))  # fmt: skip
        penalised = loss_fn(_with_contraction_weight(model, weight * size / share), head, key)
        plain = loss_fn(_with_contraction_weight(model, 0.0), tail, key)
        # the task losses are means over the batch's sets: weigh each part by its sets
        return jax.tree_util.tree_map(
            lambda p, q: (share * p + (size - share) * q) / size, penalised, plain
        )

    return dataclasses.replace(run, model=model, loss_fn=penalising_a_subset)


def _with_contraction_weight(model, weight: float):
    """`model` with every EA layer's contraction penalty at `weight`."""
    return _replace_each(
        model,
        eqx_agg.EquilibriumAggregation,
        lambda layer: layer.with_contraction_weight(weight),
        "-contraction",
    )


def _replace_each(model, kind: type, replace: Callable[[Any], Any], variant: str):
    """`model` with every node of type `kind` replaced by `replace(node)`."""

    def nodes(m):
        leaves = jax.tree_util.tree_leaves(m, is_leaf=lambda node: isinstance(node, kind))
        return [leaf for leaf in leaves if isinstance(leaf, kind)]

    if not nodes(model):
        raise ValueError(f"the {variant} variants need a model with {kind.__name__} nodes")
    return eqx.tree_at(nodes, model, replace_fn=replace)


VARIANTS = {
    "unrolled": Variant(
        lambda a: solvers.Unrolled(a.inner_steps), "Unrolled(T), the paper's (reference)"
    ),
    "checkpointed": Variant(
        lambda a: solvers.Checkpointed(a.inner_steps), "Checkpointed(T): Unrolled's gradient"
    ),
    "truncated": Variant(_truncated, "Truncated(T, --truncate-k)"),
    "implicit": Variant(_implicit, "Implicit with the layer's Newton forward", has_T=False),
    "implicit-nesterov": Variant(
        lambda a: solvers.Implicit(a.implicit_steps, lr=0.125),
        "Implicit with a restarted Nesterov forward",
        has_T=False,
    ),
    "implicit-anderson": Variant(
        lambda a: solvers.Implicit(a.implicit_steps, method=solvers.Anderson()),
        "Implicit with an Anderson forward",
        has_T=False,
    ),
    "phantom": Variant(
        lambda a: solvers.Phantom(a.implicit_steps),
        "Newton forward, one undamped Newton step differentiated",
        has_T=False,
    ),
    "phantom-nesterov": Variant(
        lambda a: solvers.Phantom(a.implicit_steps, 5, 0.5, lr=0.125),
        "Nesterov forward, 5 steps damped by 0.5 differentiated",
        has_T=False,
    ),
    "implicit-aux": Variant(
        _implicit,
        "Implicit, trained with eq. 5's auxiliary loss at weight 1 (keeps the energy solvable)",
        aux_weight=1.0,
        has_T=False,
    ),
    "checkpointed-floor": Variant(
        lambda a: solvers.Checkpointed(a.inner_steps),
        "Checkpointed(T), the potential's regulariser floored at --min-regularisation",
        edit=_floored,
    ),
    "implicit-floor": Variant(
        _implicit,
        "Implicit, the potential's regulariser floored at --min-regularisation",
        edit=_floored,
        has_T=False,
    ),
    "checkpointed-contraction": Variant(
        lambda a: solvers.Checkpointed(a.inner_steps),
        "Checkpointed(T), trained with the contraction penalty (a Jacobian regulariser) at "
        "--contraction-weight",
        edit=_contracting,
    ),
    "truncated-contraction": Variant(
        _truncated,
        "Truncated(T, --truncate-k), trained with the contraction penalty at "
        "--contraction-weight (meant to make the k taped steps' Neumann series converge)",
        edit=_contracting,
    ),
    "truncated-aux": Variant(
        _truncated,
        "Truncated(T, --truncate-k), trained with eq. 5's auxiliary loss at weight 1",
        aux_weight=1.0,
    ),
}
"""`--variants`: the strategies the benchmark can train, by name."""

DEFAULT_VARIANTS = ("unrolled", "checkpointed", "truncated", "implicit", "phantom")

QUICK = dict(dims=[1], seeds=[0, 1], width=16, batch_size=8, set_size=20, eval_sets=64,
             steps=20, eval_every=5, implicit_steps=50, convs=["gin"])  # fmt: skip


def variants(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The trained configurations: Unrolled(T) first (the reference), the other variants,
    then each of `--short-variants` (Unrolled by default) trained with each `T_train < T`
    and evaluated with T. `T_eval` is the evaluation's inner steps (None: as trained),
    `aux_weight` eq. 5's weight (None: the task's), `edit` the variant's change to the run
    (or None). Every backend reports (not raises) an inner solve that fails."""
    T = args.inner_steps
    names = ["unrolled"] + [name for name in args.variants if name != "unrolled"]
    out = [_configuration(n, args, label=n, T_eval=None) for n in names]
    for name in args.short_variants:
        for steps in args.train_inner_steps:
            if steps < T:
                short = argparse.Namespace(**{**vars(args), "inner_steps": steps})
                out.append(_configuration(name, short, label=f"{name} T={steps}→{T}", T_eval=T))
    return out


def _configuration(
    name: str, flags: argparse.Namespace, label: str, T_eval: int | None
) -> dict[str, Any]:
    """Variant `name` with its backend built from `flags` (reporting, not raising, a failed
    inner solve), shown as `label` and evaluated with `T_eval` inner steps."""
    v = VARIANTS[name]
    backend = dataclasses.replace(v.backend(flags), throw=False)
    return dict(variant=label, backend=backend, T_eval=T_eval, aux_weight=v.aux_weight,
                edit=v.edit)  # fmt: skip


def main(argv: list[str] | None = None) -> Results:
    """Run the benchmark; write `results/time-to-accuracy/`; return the `Results`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.contraction_subset > 1 and not TASKS[args.task].batch_of_sets:
        splittable = [name for name, task in TASKS.items() if task.batch_of_sets]
        parser.error(
            f"--contraction-subset {args.contraction_subset} splits each batch of sets on its "
            f"leading axis, which the {args.task} task's batches (graphs) do not have: use "
            f"it on {' or '.join(splittable)}, or drop it (every set penalised)"
        )
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    task = TASKS[args.task]
    if args.inner_steps is None:
        args.inner_steps = task.inner_steps
    results = Results("time-to-accuracy", problem.config_of(args), args.out, ABOUT)
    settings = task.settings(args)
    configurations = variants(args)
    runs = [(s, v, seed) for s in settings for v in configurations for seed in args.seeds]
    curves: dict[tuple[Any, str], list[list[dict[str, Any]]]] = {}
    megabytes: dict[tuple[Any, str], float] = {}
    for setting, variant, seed in progress(runs, "time-to-accuracy", quiet=args.quiet):
        run = task.build(args, setting, variant["backend"], seed, variant["aux_weight"])
        if variant["edit"] is not None:
            run = variant["edit"](args, run)
        config = _config(args, variant, seed)
        evaluate = run.evaluate if run.residual is None else _with_residual(run)
        trained, history = training.train(run.model, run.loss_fn, run.next_batch, config, evaluate)
        curves.setdefault((setting, variant["variant"]), []).append(
            [{**r, "metric": r[task.metric]} for r in history["eval"]]
        )
        if (setting, variant["variant"]) not in megabytes:
            megabytes[setting, variant["variant"]] = step_megabytes(
                run.model, run.loss_fn, run.next_batch(0)
            )
        compiled.release_if_near_limit()  # every run compiles its own functions
    names = [v["variant"] for v in configurations]
    for setting in settings:
        _summarise(results, task, setting, names, curves, megabytes)
    targets = targets_of(results.records)
    _plot(results, task, settings, curves)
    results.add_section(targets_section(targets))
    results.write(
        ["setting", "variant", "metric", "metric_std", "target", "target_interval", "reached",
         "time_to_target_s", "vs_unrolled", "seeds_within_half", "steps_to_target",
         "steady_vs_unrolled", "steps_per_s", "total_MB", "residual", "converged",
         "converged_in_training"],
        extra={"targets": targets, "metric": task.metric,
               "curves": {f"{s}/{v}": c for (s, v), c in curves.items()}},
    )  # fmt: skip
    return results


def _with_residual(run) -> Callable[[Any, int], dict[str, float]]:
    """The run's evaluation, plus the model's held-out inner residual and the fraction of
    held-out sets whose forward converged, at that point of training."""
    return lambda model, step: {**run.evaluate(model, step), **run.residual(model)}


def step_megabytes(model, loss_fn, batch) -> float:
    """XLA's compiled memory (temporaries, arguments, outputs) of one gradient of `loss_fn`."""
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(params, batch, key):
        return loss_fn(eqx.combine(params, static), batch, key)[0]

    batch = jax.tree_util.tree_map(jnp.asarray, batch)
    executable = jax.jit(jax.grad(loss)).lower(params, batch, jax.random.PRNGKey(0)).compile()
    return memory.compiled_megabytes(executable)["total_MB"]


def _config(args, variant: dict[str, Any], seed: int) -> training.TrainConfig:
    return training.TrainConfig(
        steps=args.steps, lr=args.lr, lr_schedule="cosine", eval_every=args.eval_every,
        log_every=args.steps, seed=seed, quiet=True, data_parallel=False,
        eval_inner_steps=variant["T_eval"],
    )  # fmt: skip


def _summarise(results: Results, task, setting, names: list[str], curves, megabytes) -> None:
    """One row per variant in this setting (the first name is the Unrolled reference)."""
    finals = {name: [run[-1]["metric"] for run in curves[setting, name]] for name in names}
    goal = seed_median(finals[names[0]], task.lower_is_better)
    low, high = bootstrap_interval(finals[names[0]], task.lower_is_better)
    reference_time = reference_steady = None
    for name in names:
        runs = curves[setting, name]
        reached = [_first(run, goal, task.lower_is_better) for run in runs]
        seconds = [r and r["train_seconds"] for r in reached]
        # a seed that never reaches the target counts as infinitely slow
        time_to = _median_or_none(seconds)
        steps_to = _median_or_none([r and r["step"] for r in reached])
        steps_per_s = statistics.median(_throughput(run) for run in runs)
        steady = None if steps_to is None else steps_to / steps_per_s
        if name == names[0]:
            reference_time, reference_steady = time_to, steady
        within_half = None
        if reference_time is not None:
            within_half = sum(t is not None and t <= 0.5 * reference_time for t in seconds)
        results.add(
            setting=f"{task.setting_name}={setting}",
            variant=name,
            metric=statistics.mean(finals[name]),
            metric_std=statistics.stdev(finals[name]) if len(finals[name]) > 1 else None,
            reached=f"{sum(r is not None for r in reached)}/{len(runs)}",
            time_to_target_s=time_to,
            vs_unrolled=_ratio(time_to, reference_time),
            seeds_within_half=None if within_half is None else f"{within_half}/{len(runs)}",
            steps_to_target=steps_to,
            steady_s=steady,
            steady_vs_unrolled=_ratio(steady, reference_steady),
            steps_per_s=steps_per_s,
            target=goal,
            target_interval=f"[{low:.3g}, {high:.3g}]",
            lower_is_better=task.lower_is_better,
            total_MB=megabytes[setting, name],
            converged_in_training=_converged_in_training(runs),
            **_trained_residual(runs),
        )


def _trained_residual(runs: list[list[dict[str, Any]]]) -> dict[str, float]:
    """The first seed's trained model's held-out `residual` and `converged` (its last
    evaluation's; none for a task without a residual)."""
    last = runs[0][-1]
    return {key: last[key] for key in ("residual", "converged") if key in last}


def _converged_in_training(runs: list[list[dict[str, Any]]]) -> float | None:
    """The fraction of held-out sets whose forward converged, over every evaluation after
    step 0 of every seed (None for a task without a residual)."""
    fractions = [r["converged"] for run in runs for r in run[1:] if "converged" in r]
    return statistics.mean(fractions) if fractions else None


def seed_median(finals: list[float], lower_is_better: bool) -> float:
    """The target: the median of Unrolled's final metrics over seeds; for an even number of
    seeds, the worse of the two middle ones (so that more than half of Unrolled's seeds
    reach it and its own time to target is defined)."""
    return (statistics.median_high if lower_is_better else statistics.median_low)(finals)


def bootstrap_interval(
    finals: list[float], lower_is_better: bool, draws: int = 2000
) -> tuple[float, float]:
    """The 95 % bootstrap interval of `seed_median` (the seeds resampled with replacement):
    how far the target could move with other seeds."""
    rng = np.random.default_rng(0)
    samples = rng.choice(np.asarray(finals), size=(draws, len(finals)), replace=True)
    medians = [seed_median(list(row), lower_is_better) for row in samples]
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


def _first(run: list[dict[str, Any]], goal: float, lower_is_better: bool) -> dict | None:
    """The first evaluation whose metric meets `goal`."""
    sign = 1 if lower_is_better else -1
    return next((r for r in run if sign * r["metric"] <= sign * goal), None)


def _median_or_none(values: list[float | None]) -> float | None:
    """The median, None counting as infinite; None if that is infinite."""
    median = statistics.median(math.inf if v is None else v for v in values)
    return None if math.isinf(median) else median


def _ratio(value: float | None, reference: float | None) -> float | None:
    return None if value is None or not reference else value / reference


def _throughput(run: list[dict[str, Any]]) -> float:
    """Steps per second between the first evaluation after step 0 (compilation done) and the
    last."""
    first, last = run[1], run[-1]
    if last["step"] == first["step"]:
        return last["step"] / last["train_seconds"]
    return (last["step"] - first["step"]) / (last["train_seconds"] - first["train_seconds"])


def targets_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: some cheaper variant reaches Unrolled's target in at most half Unrolled's
    time (the median over its seeds) on at least 4 in 5 of its seeds."""
    targets = []
    for setting in dict.fromkeys(r["setting"] for r in records):
        reference, *others = [r for r in records if r["setting"] == setting]
        fractions = [_fraction(r["seeds_within_half"]) for r in others if r["seeds_within_half"]]
        best = max(fractions, default=0.0)
        if reference["time_to_target_s"] is None:
            reason = "Unrolled itself did not reach its median final metric (see reached)"
        elif not any(r["time_to_target_s"] is not None for r in others):
            reason = "no cheaper variant reached Unrolled's final metric within the budget"
        else:
            reason = "the cheaper variants' faster steps did not make up for their slower progress"
        targets.append(
            target(
                f"{setting}: a cheaper backend reaches Unrolled's metric in <= 0.5× its time "
                "on >= 4 in 5 seeds (best fraction of seeds)",
                best,
                best >= 0.8,
                reason,
            )
        )
    return targets


def _fraction(count: str) -> float:
    """`"4/5"` -> 0.8."""
    done, total = map(int, count.split("/"))
    return done / total


def _plot(results: Results, task, settings: list[Any], curves) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(settings), 2, figsize=(11, 4 * len(settings)), squeeze=False)
    for (time_ax, step_ax), setting in zip(axes, settings, strict=True):
        label = f"{task.setting_name}={setting}"
        goal = next(r["target"] for r in results.records if r["setting"] == label)
        for (s, name), runs in curves.items():
            if s != setting:
                continue
            steps = [r["step"] for r in runs[0]]
            metric = np.mean([[r["metric"] for r in run] for run in runs], axis=0)
            seconds = np.mean([[r["train_seconds"] for r in run] for run in runs], axis=0)
            time_ax.plot(seconds, metric, "o-", ms=3, label=name)
            step_ax.plot(steps, metric, "o-", ms=3, label=name)
        for ax, xlabel in ((time_ax, "training wall-clock (s)"), (step_ax, "training step")):
            ax.axhline(goal, color="gray", ls=":", label="target: Unrolled's median final")
            ylabel = f"held-out {task.metric} (mean over seeds)"
            ax.set(yscale="log" if task.lower_is_better else "linear", xlabel=xlabel, ylabel=ylabel)
            ax.set_title(f"{type(task).__name__}, {label}")
        time_ax.legend(fontsize=8)
    fig.tight_layout()
    results.save_figure(
        fig, "time_to_accuracy", "Held-out metric against training time and steps, per backend."
    )
    plt.close(fig)


if __name__ == "__main__":
    main()

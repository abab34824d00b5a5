"""The backend recommendation for the median model, or the class-counting model
(`--model counting`: the counting task's EA layer at its defaults, on one training batch of
digit sets through its untrained encoder): eqx_agg.recommend_backend on its layer.

On your own layer and data, call the library directly:

    rec = eqx_agg.recommend_backend(layer, x_batch, candidates=[solvers.Unrolled(10), ...])
    print(rec.name)
    print(*rec.reasons, sep="\\n")
    layer = layer.with_solver(rec.solver)

examples:
  python -m benchmarks select
  python -m benchmarks select --model counting
  python -m benchmarks select --candidates unrolled:10 checkpointed:100 truncated:50:5 \\
      implicit phantom:1000:3 --memory-budget 50
"""

import argparse

import jax
import jax.numpy as jnp

import eqx_agg
import solvers

from ..shared import cli, strategies, training
from ..shared.results import Results
from ..tasks import counting
from . import problem

ABOUT = (
    "What `eqx_agg.recommend_backend` recommends for the median (or counting) model's EA "
    "layer, and the "
    "probes it measured: per candidate backend, the forward residual, the cosine of the probe "
    "gradient to the exact gradient of the argmin, compiled memory (MB) and time (ms), and the "
    "training probe's final loss and its training seconds to the goal."
)


def _parser():
    parser = cli.parser("select", __doc__)
    problem.add_problem_flags(parser)
    group = parser.add_argument_group("recommendation")
    group.add_argument(
        "--model", choices=["median", "counting"], default="median",
        help="the layer probed: the median model's (the problem flags size it) or the "
        "counting task's (digits, its defaults; --seed, --quick)",
    )  # fmt: skip
    group.add_argument(
        "--candidates", type=candidate, nargs="+", default=None, metavar="NAME[:T[:K]]",
        help="backends to compare, each NAME (one of " + ", ".join(strategies.BACKENDS)
        + "), T its steps (a cap for those run to tolerance) and K its taped steps; default: "
        "eqx_agg.default_candidates()",
    )  # fmt: skip
    group.add_argument(
        "--tol", type=cli.positive_float, default=None,
        help="residual that counts as converged (default: the layer's tolerance)",
    )  # fmt: skip
    group.add_argument(
        "--memory-budget", type=cli.positive_float, default=None, help="MB (default: none)"
    )
    group.add_argument(
        "--train-steps", type=cli.positive_int, default=100,
        help="the training probe's most Adam steps per candidate",
    )  # fmt: skip
    group.add_argument(
        "--train-lr", type=cli.positive_float, default=1e-3, help="the training probe's Adam rate"
    )
    group.add_argument("--repeats", type=cli.positive_int, default=3, help="timed runs")
    return parser


def candidate(text: str):
    """A backend from `NAME[:T[:K]]`, e.g. `truncated:20:2`, with the layer's own forward
    method; `K` for truncated and phantom; without `T` or `K`, the backend's own defaults."""
    name, *numbers = text.split(":")
    taped = name in ("truncated", "phantom")
    if name not in strategies.BACKENDS or len(numbers) > 1 + taped:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME[:T] with NAME one of {', '.join(strategies.BACKENDS)}, "
            "or NAME[:T[:K]] for truncated and phantom"
        )
    try:
        values = [cli.positive_int(n) for n in numbers]
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"in {text!r}: {error}") from None
    backend = getattr(solvers, name.capitalize())  # e.g. solvers.Truncated
    try:
        return backend(**dict(zip(("steps", "k"), values, strict=False)))
    except ValueError as error:  # e.g. k > T
        raise argparse.ArgumentTypeError(f"in {text!r}: {error}") from None


QUICK = dict(
    candidates=[candidate(c) for c in ("unrolled:2", "unrolled:4", "truncated:4:1", "implicit")],
    repeats=1,
)


def problem_layer(args: argparse.Namespace):
    """The median model's EA layer and its batch of sets, sized by the problem flags."""
    model, x, _ = problem.problem_from_args(args)
    return model.pool, x


def counting_layer(args: argparse.Namespace):
    """The counting task's EA layer (`python -m benchmarks counting`'s defaults, seed
    `--seed`) and its inputs on the task's first training batch: the sets' images through
    the model's encoder. Sets the size flags of `args` to the layer's and the batch's."""
    if args.dtype != "float32":
        raise ValueError("--model counting probes the counting task in float32: drop --dtype")
    flags = ["--seed", str(args.seed)] + ["--quick"] * args.quick
    task_args = counting.parse_args(flags)
    train_data, _, next_batch, _ = counting.task_data(task_args)
    model = counting.model_from_args(
        task_args, "ea", train_data, training.backend_from_args(task_args)
    )
    images, _ = next_batch(0)
    x = jax.vmap(jax.vmap(model.encoder))(jnp.asarray(images))
    args.batch, args.set_size, args.in_size = x.shape  # recorded as the probed sizes
    args.out_size, args.widths = model.pool.energy.out_size, task_args.potential
    args.size = args.readout = args.regularisation = None  # the median model's only
    return model.pool, x


def main(argv: list[str] | None = None) -> Results:
    """Print and write (`results/select/`) the recommendation for the median model."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    layer, x = problem_layer(args) if args.model == "median" else counting_layer(args)
    results = Results("select", problem.config_of(args), args.out, ABOUT)
    rec = eqx_agg.recommend_backend(
        layer, x, candidates=args.candidates, tol=args.tol,
        memory_budget=args.memory_budget, train_steps=args.train_steps,
        train_lr=args.train_lr, repeats=args.repeats, seed=args.seed,
        progress=not args.quiet,
    )  # fmt: skip
    for row in rec.measurements:
        results.add(**row)
    summary = f"Recommendation: {rec.name}"
    results.add_section(summary + "\n\n" + "\n".join(f"- {r}" for r in rec.reasons))
    recommendation = {"name": rec.name, "reasons": rec.reasons}
    results.write(
        [
            "candidate",
            "residual",
            "cosine_to_exact",
            "MB",
            "ms",
            "probe_loss",
            "train_steps",
            "time_to_goal_s",
        ],
        extra={"recommendation": recommendation},
    )
    print(summary)
    print("\n".join(f"  - {r}" for r in rec.reasons))
    return results

"""The backend recommendation for the median model: eqx_agg.recommend_backend on its layer.

On your own layer and data, call the library directly:

    rec = eqx_agg.recommend_backend(layer, x_batch, candidates=[solvers.Unrolled(10), ...])
    print(rec.name)
    print(*rec.reasons, sep="\\n")
    layer = layer.with_solver(rec.solver)

examples:
  python -m benchmarks select
  python -m benchmarks select --candidates unrolled:10 checkpointed:100 truncated:50:5 \\
      implicit phantom:1000:3 --memory-budget 50
"""

import argparse

import eqx_agg
import solvers

from ..shared import cli, strategies
from ..shared.results import Results
from . import problem

ABOUT = (
    "What `eqx_agg.recommend_backend` recommends for the median model's EA layer, and the "
    "probes it measured: per candidate backend, the forward residual, the cosine of the probe "
    "gradient to the exact gradient of the argmin, compiled memory (MB) and time (ms), and the "
    "training probe's final loss and its training seconds to the goal."
)


def _parser():
    parser = cli.parser("select", __doc__)
    problem.add_problem_flags(parser)
    group = parser.add_argument_group("recommendation")
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


def main(argv: list[str] | None = None) -> Results:
    """Print and write (`results/select/`) the recommendation for the median model."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    model, x, _ = problem.problem_from_args(args)
    results = Results("select", problem.config_of(args), args.out, ABOUT)
    rec = eqx_agg.recommend_backend(
        model.pool, x, candidates=args.candidates, tol=args.tol,
        memory_budget=args.memory_budget, repeats=args.repeats, seed=args.seed,
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
            "time_to_goal_s",
        ],
        extra={"recommendation": recommendation},
    )
    print(summary)
    print("\n".join(f"  - {r}" for r in rec.reasons))
    return results

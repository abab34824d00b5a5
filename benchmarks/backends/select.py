"""The backend recommendation for the median model: eqx_agg.recommend_backend on its layer.

On your own layer and data, call the library directly:

    rec = eqx_agg.recommend_backend(layer, x_batch, steps=(5, 10, 20, 50))
    print(rec.backend, rec.steps, rec.k)
    print(*rec.reasons, sep="\\n")
    layer = eqx.tree_at(lambda m: m.solver, layer, rec.solver)

examples:
  python -m benchmarks select
  python -m benchmarks select --inner-steps 5 10 20 50 100 --memory-budget 50
"""

import eqx_agg

from ..shared import cli
from ..shared.results import Results
from . import problem

ABOUT = (
    "What `eqx_agg.recommend_backend` recommends for the median model's EA layer, and the "
    "probes it measured: per backend and T, the forward residual, the cosine of the probe "
    "gradient to Unrolled's at the largest T, compiled memory (MB) and time (ms) and, for the "
    "candidates trained (when the forward does not converge), the training probe's final "
    "loss and its training seconds to the goal."
)


def _parser():
    parser = cli.parser("select", __doc__)
    problem.add_problem_flags(parser)
    group = parser.add_argument_group("recommendation")
    group.add_argument(
        "--inner-steps", type=cli.positive_int, nargs="+", default=[5, 10, 20, 50],
        help="the values of T to probe",
    )  # fmt: skip
    group.add_argument(
        "--truncate-ks", type=cli.positive_int, nargs="+", default=[1, 2, 5],
        help="Truncated's k to try under --memory-budget",
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


QUICK = dict(inner_steps=[2, 4], repeats=1)


def main(argv: list[str] | None = None) -> Results:
    """Print and write (`results/select/`) the recommendation for the median model."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    model, x, _ = problem.problem_from_args(args)
    results = Results("select", problem.config_of(args), args.out, ABOUT)
    rec = eqx_agg.recommend_backend(
        model.pool, x, steps=args.inner_steps, ks=args.truncate_ks, tol=args.tol,
        memory_budget=args.memory_budget, repeats=args.repeats, seed=args.seed,
        progress=not args.quiet,
    )  # fmt: skip
    for row in rec.measurements:
        results.add(**row)
    summary = f"Recommendation: backend={rec.backend}, T={rec.steps}, k={rec.k}"
    results.add_section(summary + "\n\n" + "\n".join(f"- {r}" for r in rec.reasons))
    recommendation = {"backend": rec.backend, "steps": rec.steps, "k": rec.k,
                      "reasons": rec.reasons}  # fmt: skip
    results.write(
        [
            "backend",
            "T",
            "k",
            "residual",
            "cosine_to_unrolled_max_T",
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

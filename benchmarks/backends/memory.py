"""Memory of each backend's compiled forward+backward, as a function of the inner steps T.

XLA's compiled memory analysis (temporary + argument + output buffers) of one jitted
forward+backward of the median model for every backend and T: exact and repeatable on any
device. (A device's peak-bytes counter is cumulative over the process, so it cannot say
what one configuration needed; it is not reported.)

examples:
  python -m benchmarks memory
  python -m benchmarks memory --size molpcba
  python -m benchmarks memory --inner-steps 1 10 100 --backends unrolled implicit
  python -m benchmarks memory --layer otke --inner-steps 10 50 100
"""

from typing import Any

from ..shared import cli, strategies
from ..shared.results import Results, progress, target, targets_section
from . import problem

ABOUT = (
    "Compiled memory (MB: XLA's temporary + argument + output buffers) of one jitted "
    "forward+backward of the median model's solved layer (EA, or OTKE/ROTP), per backend and "
    "number of inner steps T. Unrolled stores every step for the backward pass; Checkpointed "
    "about √T of them and recomputes the rest; Truncated and Phantom only their k taped "
    "steps; Implicit none."
)


def compiled_megabytes(compiled) -> dict[str, float]:
    """`temp_MB`, `argument_MB`, `output_MB` and `total_MB` of a compiled XLA executable."""
    stats = compiled.memory_analysis()
    sizes = {
        "temp_MB": stats.temp_size_in_bytes / 1e6,
        "argument_MB": stats.argument_size_in_bytes / 1e6,
        "output_MB": stats.output_size_in_bytes / 1e6,
    }
    return {**sizes, "total_MB": sum(sizes.values())}


def _parser():
    parser = cli.parser("memory", __doc__)
    problem.add_problem_flags(parser, layers=True)
    problem.add_sweep_flags(parser)
    return parser


QUICK = dict(inner_steps=[1, 4])


def main(argv: list[str] | None = None) -> Results:
    """Run the suite; write `results/memory/`; return the `Results`."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    model, x, labels = problem.problem_from_args(args)
    results = Results("memory", problem.config_of(args), args.out, ABOUT)
    runs = [(name, t) for name in args.backends for t in args.inner_steps]
    for name, steps in progress(runs, "memory", quiet=args.quiet):
        candidate = problem.with_solver(
            model, problem.sweep_backend(args, name, steps, throw=False)
        )
        compiled, _ = problem.compiled_loss_and_grad(candidate, x, labels)
        described = strategies.describe(candidate.pool.solver)
        results.add(**described, T=steps, **compiled_megabytes(compiled))
    targets = targets_of(results.records)
    _report(results, targets)
    results.write(
        ["backend", "method", "T", "k", "temp_MB", "argument_MB", "output_MB", "total_MB"],
        extra={"targets": targets},
    )
    return results


def targets_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Implicit's memory at the largest T against Unrolled's, and flat in T; Checkpointed's
    against Unrolled's."""
    total = {(r["backend"], r["T"]): r["total_MB"] for r in records}
    steps = sorted({r["T"] for r in records})
    big, small = steps[-1], 5 if 5 in steps else steps[0]
    targets = []
    if ("checkpointed", big) in total and ("unrolled", big) in total and big >= 100:
        ratio = total["checkpointed", big] / total["unrolled", big]
        targets.append(
            target(
                f"Checkpointed's memory at T={big} <= 0.2x Unrolled's",
                ratio,
                ratio <= 0.2,
                "the model's own buffers (parameters, batch) dominate at this size",
            )
        )
    if ("implicit", big) in total and ("unrolled", big) in total:
        ratio = total["implicit", big] / total["unrolled", big]
        targets.append(
            target(
                f"Implicit's memory at T={big} <= 1/10 of Unrolled's",
                ratio,
                ratio <= 0.1,
                "at this T Unrolled's tape is still small next to the model's own buffers",
            )
        )
    if ("implicit", big) in total and ("implicit", small) in total and big != small:
        growth = total["implicit", big] / total["implicit", small] - 1
        targets.append(
            target(
                f"Implicit's memory flat in T: T={big} within 10% of T={small}",
                growth,
                abs(growth) <= 0.1,
                "the forward's per-step records grow with T",
            )
        )
    return targets


def _report(results: Results, targets) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["backend"] for r in results.records):
        rows = [r for r in results.records if r["backend"] == name]
        ax.loglog([r["T"] for r in rows], [r["total_MB"] for r in rows], "o-", label=name)
    ax.set_xlabel("inner steps T")
    ax.set_ylabel("compiled memory of forward+backward (MB)")
    ax.legend()
    results.save_figure(fig, "memory_vs_steps", "Compiled forward+backward memory vs T.")
    plt.close(fig)
    results.add_section(targets_section(targets))

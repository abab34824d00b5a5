"""What `make bench-gpu` runs: the figures that need a GPU, in one command, within a budget
(8 minutes on one modern GPU).

Runs, each part writing its own folder under --out:

  timing-counting, timing-molpcba   the timing suite at the paper's counting and MOLPCBA
                                    layer sizes, every backend (no PyG peer)
  memory-counting, memory-molpcba   the memory suite at the same sizes, every backend
  time-to-accuracy                  the median task, D = 1, seeds 0 and 1, 300 steps,
                                    every backend
  median                            the median task's EA model at the paper's width 256,
                                    D = 1, for as many steps as the rest of the budget
                                    allows (--budget-s minus what the other parts took,
                                    minus --margin-s for its evaluation and report)

then writes <out>/report.md and <out>/results.json: the device and versions (or, where
JAX's default device is a CPU, a notice that no GPU was found), each part's wall time and
key table, and links to each part's own report.

examples:
  python -m benchmarks gpu
  python -m benchmarks gpu --budget-s 900 --out /tmp/gpu
  python -m benchmarks gpu --quick --quiet
"""

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backends import memory, time_to_accuracy, timing
from .shared import cli, strategies
from .shared.results import Results, environment, markdown_table
from .tasks import median

BUDGET_S = 480.0
QUICK_BUDGET_S = 60.0
QUICK_MEDIAN_LIMIT_S = 0.5
"""The median's time limit under --quick: past its first step (compilation), short of the
30 steps --quick asks for."""
MEDIAN_STEPS = 100_000
"""The median's requested steps: more than any budget here fits; the time limit stops it."""


def _as_recorded(records: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    return records


@dataclasses.dataclass(frozen=True)
class Part:
    """One suite run by the command: its folder under --out, its `main(argv)`, its flags
    (besides --out, --quick and --quiet), the columns of its key table,
    `rows(records, out)`, the table's rows from the records of `out/results.json`, and
    `quick_flags`, which override `flags` under --quick."""

    folder: str
    title: str
    main: Callable[[list[str]], Any]
    flags: tuple[str, ...]
    columns: tuple[str, ...]
    rows: Callable[[list[dict[str, Any]], Path], list[dict[str, Any]]] = _as_recorded
    quick_flags: tuple[str, ...] = ()


TIMING_COLUMNS = ("model", "method", "T", "ms", "vs_unrolled", "converged")
MEMORY_COLUMNS = ("backend", "method", "T", "total_MB")
SWEEP_FLAGS = ("--backends", *strategies.BACKENDS)
QUICK_SWEEP = ("--inner-steps", "2")
PARTS = (
    Part("timing-counting", "Timing, counting size", timing.main,
         ("--size", "counting", *SWEEP_FLAGS, "--no-peers"), TIMING_COLUMNS,
         quick_flags=QUICK_SWEEP),
    Part("timing-molpcba", "Timing, MOLPCBA size", timing.main,
         ("--size", "molpcba", *SWEEP_FLAGS, "--no-peers"), TIMING_COLUMNS,
         quick_flags=QUICK_SWEEP),
    Part("memory-counting", "Memory, counting size", memory.main,
         ("--size", "counting", *SWEEP_FLAGS), MEMORY_COLUMNS, quick_flags=QUICK_SWEEP),
    Part("memory-molpcba", "Memory, MOLPCBA size", memory.main,
         ("--size", "molpcba", *SWEEP_FLAGS), MEMORY_COLUMNS, quick_flags=QUICK_SWEEP),
    Part("time-to-accuracy", "Time-to-accuracy, median task", time_to_accuracy.main,
         ("--dims", "1", "--seeds", "0", "1", "--steps", "300", "--eval-every", "50",
          "--variants", *time_to_accuracy.DEFAULT_VARIANTS, "--train-inner-steps"),
         ("variant", "metric", "time_to_target_s", "vs_unrolled", "steps_per_s"),
         quick_flags=("--seeds", "0", "--variants", "unrolled", "implicit")),
)  # fmt: skip
"""The parts of fixed size, in the order they run; the median task runs last."""


def _median_rows(records: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """The median task's rows with the steps each model ran (from its training log,
    `<out>/logs/<model>-D<D>.jsonl`: its last training record) and its time limit."""
    limit = json.loads((out / "results.json").read_text())["config"]["time_limit_s"]
    rows = []
    for record in records:
        log = out / "logs" / f"{record['model']}-D{record['D']}.jsonl"
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        last = [line for line in lines if line["kind"] == "train"][-1]
        rows.append(
            {
                **record,
                "steps_requested": record["steps"],
                "steps_run": last["step"],
                "time_limit_s": float(limit),
            }
        )
    return rows


MEDIAN = Part(
    "median", "Median task, paper width, time-limited", median.main,
    ("--models", "ea", "--dims", "1", "--width", "256", "--steps", str(MEDIAN_STEPS),
     "--eval-every", "1000"),
    ("model", "D", "steps_requested", "steps_run", "time_limit_s", "mse", "best_mse",
     "train_seconds"),
    _median_rows,
)  # fmt: skip

ABOUT = (
    "The figures `make bench-gpu` measures: the timing and memory suites at the paper's "
    "counting and MOLPCBA layer sizes, a short time-to-accuracy run on the median task, and "
    "the median task at the paper's width for what is left of the budget. Each part's wall "
    "time and key table follow; its own report (linked) holds the rest."
)


def _parser():
    parser = cli.parser("gpu", __doc__)
    parser.add_argument(
        "--budget-s", type=cli.positive_float, default=None,
        help=f"wall-clock budget of the whole run, in seconds (default: {BUDGET_S:g}, "
        f"{QUICK_BUDGET_S:g} with --quick)",
    )  # fmt: skip
    parser.add_argument(
        "--margin-s", type=cli.non_negative_float, default=30.0,
        help="seconds of the budget kept back from the median's training for its "
        "set-up, evaluation and report",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="every part at tiny sizes (tests)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--out", default="results/gpu", help="root folder of every part's output")
    return parser


def main(argv: list[str] | None = None) -> Results:
    """Run every part; write `<out>/<part>/` and `<out>/report.md`; return the `Results`."""
    args = _parser().parse_args(argv)
    budget = args.budget_s or (QUICK_BUDGET_S if args.quick else BUDGET_S)
    root = Path(args.out)
    start = time.perf_counter()
    runs = [_run(part, [], args, root) for part in PARTS]
    remaining = budget - (time.perf_counter() - start)
    limit = max(0.0, remaining - args.margin_s)
    if args.quick:
        limit = min(limit, QUICK_MEDIAN_LIMIT_S)
    runs.append(_run(MEDIAN, ["--time-limit-s", f"{limit:.3f}"], args, root))
    total = time.perf_counter() - start
    env = environment()
    summary = Results("gpu", {**vars(args), "budget_s": budget}, root, _opening(env))
    for run in runs:
        summary.add(**{key: value for key, value in run.items() if key != "table"})
    over = total - budget
    summary.add_section(
        f"Total wall time {total:.0f} s for a budget of {budget:.0f} s"
        + (f": **over by {over:.0f} s**." if over > 0 else ".")
    )
    for run in runs:
        summary.add_section(
            f"## {run['part']} ({run['wall_s']:.1f} s, report: {run['report']})\n\n"
            + markdown_table(run["table"], run["columns"])
        )
    summary.write(
        ["part", "wall_s", "rows", "report"],
        extra={
            "gpu_found": env["platform"] != "cpu",
            "total_s": total,
            "tables": {run["folder"]: run["table"] for run in runs},
        },
    )
    return summary


def _run(part: Part, extra_flags: list[str], args, root: Path) -> dict[str, Any]:
    """Run `part` into `root/<folder>`; its wall time and key table (rows of `columns`)."""
    out = root / part.folder
    flags = [*part.flags, *extra_flags, "--out", str(out)]
    flags += [*part.quick_flags, "--quick"] * args.quick + ["--quiet"] * args.quiet
    print(f"\n== {part.folder} ==")
    start = time.perf_counter()
    part.main(flags)
    wall = time.perf_counter() - start
    records = json.loads((out / "results.json").read_text())["records"]
    table = part.rows(records, out)
    return dict(
        part=part.title,
        folder=part.folder,
        wall_s=wall,
        rows=len(table),
        report=f"[{part.folder}]({part.folder}/report.md)",
        columns=list(part.columns),
        table=[{column: row.get(column) for column in part.columns} for row in table],
    )


def _opening(env: dict[str, Any]) -> str:
    """The report's first lines: the device and versions, or that no GPU was found."""
    versions = (
        f"jax {env['jax']}, jaxlib {env['jaxlib']}, equinox {env['equinox']}, "
        f"optax {env['optax']}, Python {env['python']}"
    )
    if env["platform"] == "cpu":
        device = (
            f"**No GPU found: JAX's default device is a CPU ({env['device']}, "
            f"{env['cpu_count']} cores); every figure below is a CPU figure.** {versions}."
        )
    else:
        device = (
            f"**Device: {env['device']}** ({env['platform']}, {env['device_count']} "
            f"device(s)), {versions}."
        )
    return f"{device}\n\n{ABOUT}"


if __name__ == "__main__":
    main()

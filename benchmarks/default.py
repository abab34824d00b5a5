"""What `make bench` runs: every backend suite at its default sizes, then one summary.

Runs memory, timing, convergence and select in float32, then accuracy in float64 (last,
because it switches JAX to 64-bit), each writing <out>/<suite>/; then writes
<out>/default/ with every suite's targets (measured, met or not, and why not) and run time.

examples:
  python -m benchmarks default
  python -m benchmarks default --no-peers --out /tmp/results
"""

import json
import time
from pathlib import Path

from .backends import accuracy, convergence, memory, select, timing
from .shared import cli, compiled
from .shared.results import Results, markdown_table

SUITES = {
    "memory": memory,
    "timing": timing,
    "convergence": convergence,
    "select": select,
    "accuracy": accuracy,
}

ABOUT = (
    "Every backend suite at its default sizes (the median model of the paper's section 5.1, "
    "CPU-sized): each target with what was measured and, when it is not met, why. The "
    "suites' own reports hold the tables and plots."
)


def apart_from_peers(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The targets about this library, and those comparing it with a peer (PyG)."""
    peers = [row for row in rows if "PyG" in row["target"]]
    return [row for row in rows if row not in peers], peers


def _advice(recommendation: dict | None) -> str:
    """The report's opening: what to use, from this run's measurements, then what it holds."""
    lines = [
        "**Advice.** For a learned energy, use what this run recommends below (measured "
        "on the median model); keep analytic energies and the transport layers at their "
        "default solvers. `Implicit()` (a Newton forward to tolerance) gives the argmin "
        "itself and memory flat in T, at a higher cost per training step at these sizes. "
        'The README\'s "Which backend for which layer" says why.'
    ]
    if recommendation is not None:
        lines.append(
            f"This run's recommendation for the median model (`select`): "
            f"**{recommendation['name']}**, because:\n\n"
            + "\n".join(f"- {reason}" for reason in recommendation["reasons"])
        )
    return "\n\n".join([*lines, ABOUT])


def main(argv: list[str] | None = None) -> Results:
    """Run every suite; write `<out>/<suite>/` and `<out>/default/`."""
    parser = cli.parser("default", __doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the tests)")
    parser.add_argument("--no-peers", action="store_true", help="skip PyTorch Geometric")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="random seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--out", default="results", help="root folder of every suite's output")
    args = parser.parse_args(argv)
    root = Path(args.out)
    rows, recommendation, run_times = [], None, []
    for name, suite in SUITES.items():
        flags = ["--seed", str(args.seed), "--out", str(root / name)]
        flags += ["--quick"] * args.quick + ["--quiet"] * args.quiet
        flags += ["--no-peers"] * (args.no_peers and name == "timing")
        print(f"\n== {name} ==")
        start = time.perf_counter()
        results = suite.main(flags)
        run_times.append({"suite": name, "run time (s)": time.perf_counter() - start})
        payload = json.loads((results.dir / "results.json").read_text())
        rows += [{"suite": name, **target} for target in payload.get("targets", [])]
        recommendation = payload.get("recommendation", recommendation)
        compiled.release_if_near_limit()  # the next suite compiles its own functions
    summary = Results("default", vars(args), root / "default", _advice(recommendation))
    ours, peers = apart_from_peers(rows)
    for row in ours:
        summary.add(**row)
    if peers:
        summary.add_section(
            "Peer comparison (PyTorch Geometric's EquilibriumAggregation, timed in the same "
            "run):\n\n" + markdown_table(peers, ["suite", "target", "measured", "met", "why"])
        )
    total = sum(r["run time (s)"] for r in run_times)
    summary.add_section(
        f"Run times ({total:.0f} s in all):\n\n"
        + markdown_table(run_times, ["suite", "run time (s)"])
    )
    summary.add_section(
        "Per-suite reports: " + ", ".join(f"[{name}](../{name}/report.md)" for name in SUITES)
    )
    summary.write(["suite", "target", "measured", "met", "why"], extra={"run_times": run_times})
    return summary

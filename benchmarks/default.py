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
from .shared import cli
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
    summary = Results("default", vars(args), root / "default", ABOUT)
    recommendation, run_times = None, []
    for name, suite in SUITES.items():
        flags = ["--seed", str(args.seed), "--out", str(root / name)]
        flags += ["--quick"] * args.quick + ["--quiet"] * args.quiet
        flags += ["--no-peers"] * (args.no_peers and name == "timing")
        print(f"\n== {name} ==")
        start = time.perf_counter()
        results = suite.main(flags)
        run_times.append({"suite": name, "run time (s)": time.perf_counter() - start})
        payload = json.loads((results.dir / "results.json").read_text())
        for target in payload.get("targets", []):
            summary.add(suite=name, **target)
        recommendation = payload.get("recommendation", recommendation)
    if recommendation is not None:
        summary.add_section(
            f"Recommendation for the median model: backend={recommendation['backend']}, "
            f"T={recommendation['steps']}, k={recommendation['k']}\n\n"
            + "\n".join(f"- {reason}" for reason in recommendation["reasons"])
        )
    summary.add_section(markdown_table(run_times, ["suite", "run time (s)"]))
    summary.add_section(
        "Per-suite reports: " + ", ".join(f"[{name}](../{name}/report.md)" for name in SUITES)
    )
    summary.write(["suite", "target", "measured", "met", "why"], extra={"run_times": run_times})
    return summary

"""`make bench`: every backend suite at its default sizes, then a combined summary.

Runs memory, timing, convergence and select in float32, then accuracy in float64 (last,
because it switches JAX to 64-bit), each writing `results/<suite>/`; then writes
`results/default/` with every suite's targets (measured, met or not) and run time.

    python -m benchmarks default [--quick] [--no-peers] [--seed 0] [--out results]
"""

import argparse
import json
import time
from pathlib import Path

from . import accuracy, convergence, memory, select, timing
from ._results import Results

SUITES = {
    "memory": memory,
    "timing": timing,
    "convergence": convergence,
    "select": select,
    "accuracy": accuracy,
}


def main(argv: list[str] | None = None) -> Results:
    """Run every suite; write `<out>/<suite>/` and `<out>/default/`."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks default", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--no-peers", action="store_true", help="skip PyTorch Geometric")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--out", default="results", help="root folder of every suite's output")
    args = parser.parse_args(argv)
    root = Path(args.out)
    summary = Results("default", vars(args), root / "default")
    recommendation = None
    for name, suite in SUITES.items():
        flags = ["--seed", str(args.seed), "--out", str(root / name)]
        flags += ["--quick"] * args.quick + ["--quiet"] * args.quiet
        flags += ["--no-peers"] * (args.no_peers and name == "timing")
        print(f"\n== {name} ==")
        start = time.perf_counter()
        results = suite.main(flags)
        elapsed = time.perf_counter() - start
        payload = json.loads((results.dir / "results.json").read_text())
        summary.add(suite=name, target="(run time, seconds)", measured=elapsed, met="")
        for target in payload.get("targets", []):
            summary.add(suite=name, **target)
        recommendation = payload.get("recommendation", recommendation)
    if recommendation is not None:
        summary.add_section(
            f"Recommendation for the default model: backend={recommendation['backend']}, "
            f"T={recommendation['steps']}, k={recommendation['k']}\n\n"
            + "\n".join(f"- {reason}" for reason in recommendation["reasons"])
        )
    summary.add_section(
        "Per-suite reports: " + ", ".join(f"[{name}](../{name}/report.md)" for name in SUITES)
    )
    summary.write(["suite", "target", "measured", "met"])
    return summary


if __name__ == "__main__":
    main()

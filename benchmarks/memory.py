"""Bytes needed by the jitted forward+backward of each backend as a function of T (item 2).

XLA's compiled memory analysis (temp + argument + output bytes: exact and repeatable on
CPU) for every backend and `T`; on a GPU also the device's peak bytes in use after one run
(cumulative over the process, so only its growth is meaningful).

    python -m benchmarks memory [--size median|counting|molpcba] [--steps 1 2 5 ...]
        [--backends ...] [--quick]
"""

import argparse
from typing import Any

import jax

from . import problem
from ._results import Results, markdown_table, progress


def compiled_bytes(compiled) -> dict[str, int]:
    """`temp`, `argument`, `output` and `total` bytes of a compiled XLA executable."""
    stats = compiled.memory_analysis()
    sizes = {
        "temp_bytes": int(stats.temp_size_in_bytes),
        "argument_bytes": int(stats.argument_size_in_bytes),
        "output_bytes": int(stats.output_size_in_bytes),
    }
    return {**sizes, "total_bytes": sum(sizes.values())}


def peak_device_bytes(compiled, params, x, labels) -> int | None:
    """Run once and return the device's `peak_bytes_in_use` (None off GPU)."""
    device = jax.devices()[0]
    if device.platform != "gpu":
        return None
    jax.block_until_ready(compiled(params, x, labels))
    return int(device.memory_stats()["peak_bytes_in_use"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks memory", description=__doc__)
    problem.add_problem_flags(parser)
    problem.add_sweep_flags(parser)
    return parser


QUICK = dict(steps=[1, 4])


def main(argv: list[str] | None = None) -> Results:
    """Run the suite; write `results/memory/`; return the `Results`."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    model, x, labels = problem.problem_from_args(args)
    results = Results("memory", problem.config_of(args), args.out)
    runs = [(name, t) for name in args.backends for t in args.steps]
    for name, steps in progress(runs, "memory", quiet=args.quiet):
        k = min(args.k, steps) if name == "truncated" else None
        solver = problem.cast(problem.make_backend(name, steps, k, throw=False), x.dtype)
        compiled, params = problem.compiled_loss_and_grad(
            problem.with_solver(model, solver), x, labels
        )
        results.add(
            backend=name,
            T=steps,
            k=k,
            **compiled_bytes(compiled),
            peak_device_bytes=peak_device_bytes(compiled, params, x, labels),
        )
    targets = targets_of(results.records)
    _report(results, targets)
    results.write(
        [
            "backend",
            "T",
            "k",
            "temp_bytes",
            "argument_bytes",
            "output_bytes",
            "total_bytes",
            "peak_device_bytes",
        ],  # fmt: skip
        extra={"targets": targets},
    )
    return results


def targets_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's memory targets, from the largest and the T = 5 (or smallest) rows."""
    total = {(r["backend"], r["T"]): r["total_bytes"] for r in records}
    steps = sorted({r["T"] for r in records})
    big, small = steps[-1], 5 if 5 in steps else steps[0]
    targets = []
    if ("implicit", big) in total and ("unrolled", big) in total:
        ratio = total["implicit", big] / total["unrolled", big]
        targets.append(
            {
                "target": f"Implicit bytes at T={big} <= 1/10 of Unrolled's",
                "measured": ratio,
                "met": bool(ratio <= 0.1),
            }  # fmt: skip
        )
    if ("implicit", big) in total and ("implicit", small) in total:
        growth = total["implicit", big] / total["implicit", small] - 1
        targets.append(
            {
                "target": f"Implicit bytes flat: T={big} within 10% of T={small}",
                "measured": growth,
                "met": bool(abs(growth) <= 0.1),
            }  # fmt: skip
        )
    return targets


def _report(results: Results, targets) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["backend"] for r in results.records):
        rows = [r for r in results.records if r["backend"] == name]
        ax.loglog([r["T"] for r in rows], [r["total_bytes"] for r in rows], "o-", label=name)
    ax.set_xlabel("inner steps T")
    ax.set_ylabel("bytes (XLA temp + argument + output)")
    ax.legend()
    results.save_figure(fig, "memory_vs_steps", "Compiled forward+backward bytes vs T.")
    plt.close(fig)
    results.add_section("Targets:\n\n" + markdown_table(targets, ["target", "measured", "met"]))


if __name__ == "__main__":
    main()

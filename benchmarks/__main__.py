"""`python -m benchmarks <suite> [flags]`: run one benchmark suite (`--help` per suite)."""

import importlib
import sys

SUITES = {
    # name: (module, description)
    "default": ("benchmarks.default", "what `make bench` runs: every backend suite, default sizes"),
    "accuracy": ("benchmarks.accuracy", "gradient error of each backend vs a float64 reference"),
    "memory": ("benchmarks.memory", "compiled forward+backward bytes of each backend vs T"),
    "timing": ("benchmarks.timing", "forward+backward time vs T, sum/attention pooling, PyG"),
    "convergence": ("benchmarks.convergence", "inner-loop max|grad| and energy per step"),
    "select": ("benchmarks.select", "recommend a backend (backend, T, k) for the default model"),
    "median": ("benchmarks.median", "paper 5.1: median of 100 numbers, MSE vs D, Sum/attn/EA"),
    "counting": ("benchmarks.counting", "paper 5.2: count classes in 16 images, Sum/attn/EA"),
    "molecules": ("benchmarks.molecules", "paper 5.3/Table 2: GCN/GIN readouts on molecules"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in SUITES:
        print("usage: python -m benchmarks <suite> [--help | flags]\n\nsuites:")
        for name, (_, description) in SUITES.items():
            print(f"  {name:<12} {description}")
        if argv and argv[0] not in {"-h", "--help"}:
            sys.exit(f"\nunknown suite {argv[0]!r}")
        return
    module = importlib.import_module(SUITES[argv[0]][0])
    module.main(argv[1:])


if __name__ == "__main__":
    main()

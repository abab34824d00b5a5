"""`python -m benchmarks <command> [flags]`: run a backend suite or one of the paper's tasks
(`python -m benchmarks <command> --help` for its flags and their defaults)."""

import importlib
import sys

COMMANDS = {
    # name: (module, description)
    "default": ("benchmarks.default", "what `make bench` runs: every backend suite"),
    "gpu": ("benchmarks.gpu", "what `make bench-gpu` runs: the GPU figures in 8 minutes"),
    "accuracy": ("benchmarks.backends.accuracy", "gradient error of each backend vs T"),
    "memory": ("benchmarks.backends.memory", "compiled memory of each backend vs T"),
    "timing": ("benchmarks.backends.timing", "time of each backend vs T, and of the baselines"),
    "convergence": ("benchmarks.backends.convergence", "inner-loop residual and energy per step"),
    "forward": (
        "benchmarks.backends.forward",
        "steps and time of each forward method to tolerance",
    ),
    "time-to-accuracy": (
        "benchmarks.backends.time_to_accuracy",
        "held-out error vs training time, per backend",
    ),
    "select": ("benchmarks.backends.select", "the recommended backend for the median model"),
    "median": ("benchmarks.tasks.median", "paper 5.1: the median of 100 numbers, MSE vs D"),
    "counting": ("benchmarks.tasks.counting", "paper 5.2: count the classes in 16 images"),
    "molecules": ("benchmarks.tasks.molecules", "paper 5.3 / Table 2: GCN and GIN readouts"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print("usage: python -m benchmarks <command> [--help | flags]\n\ncommands:")
        for name, (_, description) in COMMANDS.items():
            print(f"  {name:<17} {description}")
        if argv and argv[0] not in {"-h", "--help"}:
            sys.exit(f"\nunknown command {argv[0]!r}")
        return
    from benchmarks.shared.training import initialize_from_environment

    initialize_from_environment()  # a multi-host run joins before any JAX computation
    module = importlib.import_module(COMMANDS[argv[0]][0])
    module.main(argv[1:])


if __name__ == "__main__":
    main()

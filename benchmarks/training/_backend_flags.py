"""Command-line flags that choose the EA differentiation backend of each layer."""

import argparse

import solvers

BACKENDS = ("unrolled", "implicit", "truncated")


def add_backend_flags(
    parser: argparse.ArgumentParser,
    backend: str = "unrolled",
    inner_steps: int = 10,
    truncate_k: int = 2,
    inner_lr: float = 0.125,
) -> None:
    """Add `--backend`, `--inner-steps`, `--truncate-k`, `--inner-lr` to `parser`.

    `--backend` takes one of `unrolled|implicit|truncated`, or a comma list with one per EA
    layer (`--backend implicit,unrolled`); `--inner-steps` likewise.
    """
    group = parser.add_argument_group("equilibrium aggregation backend")
    group.add_argument(
        "--backend",
        default=backend,
        help=f"{'|'.join(BACKENDS)}, or a comma list with one per EA layer",
    )
    group.add_argument(
        "--inner-steps",
        default=str(inner_steps),
        help="inner Nesterov steps (an int, or a comma list with one per EA layer)",
    )
    group.add_argument(
        "--truncate-k", type=int, default=truncate_k, help="taped steps of --backend truncated"
    )
    group.add_argument(
        "--inner-lr", type=float, default=inner_lr, help="initial (learnable) inner step size"
    )


def backend_from_args(
    args: argparse.Namespace, layer: int = 0, throw: bool = False
) -> solvers.AbstractBackend:
    """The backend of EA layer `layer` from `add_backend_flags` flags.

    A single value of `--backend` / `--inner-steps` applies to every layer. `throw=False`
    (the default here) reports a diverged inner solve in `Solution.stats` rather than
    stopping training.
    """
    name = _pick(args.backend, layer, "--backend")
    steps = int(_pick(args.inner_steps, layer, "--inner-steps"))
    common = {"steps": steps, "lr": args.inner_lr, "throw": throw}
    if name == "unrolled":
        return solvers.Unrolled(**common)
    if name == "implicit":
        return solvers.Implicit(**common)
    if name == "truncated":
        return solvers.Truncated(k=min(args.truncate_k, steps), **common)
    raise ValueError(f"--backend must be one of {BACKENDS}, got {name!r}")


def _pick(value: str | int, layer: int, flag: str) -> str:
    values = str(value).split(",")
    if len(values) == 1:
        return values[0].strip()
    if layer >= len(values):
        raise ValueError(f"{flag} {value!r} names {len(values)} layers, asked for layer {layer}")
    return values[layer].strip()

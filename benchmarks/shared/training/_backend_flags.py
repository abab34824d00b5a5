"""Command-line flags that choose the EA differentiation backend of each layer."""

import argparse

import solvers

from .. import cli
from ..strategies import BACKENDS, METHODS, make_backend, make_method


def add_backend_flags(
    parser: argparse.ArgumentParser,
    backend: str = "unrolled",
    inner_steps: int = 10,
    truncate_k: int = 2,
    inner_lr: float = 0.125,
    choose_backend: bool = True,
) -> None:
    """Add `--backend` (unless `choose_backend` is False: a task comparing backends has its
    own `--backends`), `--method`, `--inner-steps`, `--eval-inner-steps`, `--truncate-k`,
    `--inner-lr` to `parser`.

    `--backend` and `--inner-steps` take one value, or one per EA layer
    (`--backend implicit unrolled`).
    """
    group = parser.add_argument_group("equilibrium aggregation")
    if choose_backend:
        group.add_argument(
            "--backend", nargs="+", choices=BACKENDS, default=[backend],
            help="the EA layers' backend (one, or one per EA layer)",
        )  # fmt: skip
    group.add_argument(
        "--method", choices=METHODS, default="layer",
        help="the EA layers' forward method (layer: Nesterov, or Newton under the backends "
        "that run to tolerance)",
    )  # fmt: skip
    group.add_argument(
        "--inner-steps", type=cli.positive_int, nargs="+", default=[inner_steps],
        help="inner steps T (one, or one per EA layer; Implicit, Phantom: a cap)",
    )  # fmt: skip
    group.add_argument(
        "--eval-inner-steps", type=cli.positive_int, default=None,
        help="inner steps T at evaluation, in every EA layer (default: as in training)",
    )  # fmt: skip
    group.add_argument(
        "--truncate-k", type=cli.positive_int, default=truncate_k,
        help="taped steps k of Truncated and Phantom",
    )  # fmt: skip
    group.add_argument(
        "--inner-lr", type=cli.positive_float, default=inner_lr,
        help="initial (learnable) step size of a Nesterov forward",
    )  # fmt: skip


def backend_from_args(
    args: argparse.Namespace, layer: int = 0, throw: bool = False
) -> solvers.AbstractBackend:
    """The backend of EA layer `layer` from `add_backend_flags` flags.

    A single value of `--backend` / `--inner-steps` applies to every layer. `throw=False`
    (the default here) reports a diverged inner solve in `Solution.stats` rather than
    stopping training.
    """
    name = _pick(args.backend, layer, "--backend")
    steps = _pick(args.inner_steps, layer, "--inner-steps")
    method = make_method(args.method)
    if method is None and name not in ("implicit", "phantom"):
        method = solvers.Nesterov(lr=args.inner_lr)  # the layer's own, with --inner-lr
    return make_backend(name, steps, k=args.truncate_k, method=method, throw=throw)


def _pick(values: list, layer: int, flag: str):
    if len(values) == 1:
        return values[0]
    if layer >= len(values):
        raise ValueError(f"{flag} names {len(values)} layers, asked for layer {layer}")
    return values[layer]

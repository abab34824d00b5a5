"""The training configuration and its command-line flags."""

import argparse
import dataclasses
from pathlib import Path

from .. import cli

LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How `train` runs.

    **Arguments:**

    - `steps`: optimiser steps in total (a resumed run continues up to this number).
    - `lr`: Adam learning rate (the peak one under a schedule).
    - `lr_schedule`: `"constant"`, or `"cosine"`: cosine decay from `lr` to `lr / 100` over
      `steps`.
    - `aux_weight`: weight of the EA auxiliary loss (eq. 5; paper D.2 uses 1e-4). The loop
      does not use it itself: tasks read it when building their `loss_fn`.
    - `eval_every`: call `evaluate` every this many steps (and after the last one).
    - `log_every`: write a training record every this many steps.
    - `checkpoint_every`: save a checkpoint every this many steps (0: only at the end).
    - `seed`: seeds the per-step keys passed to `loss_fn`.
    - `log_path`: JSON-lines log (None: no file).
    - `checkpoint_dir`: where `checkpoint.eqx` and `checkpoint.json` go (None: no checkpoints).
    - `resume`: continue from the checkpoint in `checkpoint_dir` when there is one.
    - `data_parallel`: shard the batch across every device of every process when there are
      several.
    - `quiet`: no progress bar.
    - `eval_inner_steps`: evaluate with this many inner steps in every solved layer
      (`eqx_agg.with_inner_steps`; the paper's E.2: fewer in training than at test). None:
      as trained.
    - `time_limit_s`: stop after the first step that ends more than this many seconds after
      this run's training began (evaluations included); that step is logged, evaluated and
      checkpointed as the last one, its training record marked `time_limit_reached`. None:
      run every step.
    """

    steps: int = 1000
    lr: float = 1e-3
    lr_schedule: str = "constant"
    aux_weight: float = 1e-4
    eval_every: int = 200
    log_every: int = 10
    checkpoint_every: int = 0
    seed: int = 0
    log_path: Path | None = None
    checkpoint_dir: Path | None = None
    resume: bool = False
    data_parallel: bool = True
    quiet: bool = False
    eval_inner_steps: int | None = None
    time_limit_s: float | None = None

    def __post_init__(self):
        for name in ("steps", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.eval_inner_steps is not None and self.eval_inner_steps < 1:
            raise ValueError(f"eval_inner_steps must be at least 1, got {self.eval_inner_steps}")
        if self.time_limit_s is not None and self.time_limit_s < 0:
            raise ValueError(f"time_limit_s must be >= 0, got {self.time_limit_s}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume needs a checkpoint_dir")


def add_training_flags(parser: argparse.ArgumentParser, **defaults) -> None:
    """Add the `TrainConfig` flags to `parser`; `defaults` override `TrainConfig`'s
    (e.g. `steps=2000`)."""
    base = dataclasses.replace(TrainConfig(), **defaults)
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=cli.positive_int, default=base.steps, help="Adam steps")
    group.add_argument(
        "--lr", type=cli.positive_float, default=base.lr, help="Adam (peak) learning rate"
    )
    group.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=base.lr_schedule,
        help="constant, or cosine decay to lr/100 over --steps",
    )
    group.add_argument(
        "--aux-weight", type=cli.non_negative_float, default=base.aux_weight,
        help="weight of the auxiliary loss (EA's eq. 5)",
    )  # fmt: skip
    group.add_argument(
        "--eval-every",
        type=cli.positive_int,
        default=base.eval_every,
        help="steps between evaluations",
    )
    group.add_argument(
        "--log-every",
        type=cli.positive_int,
        default=base.log_every,
        help="steps between log records",
    )
    group.add_argument(
        "--checkpoint-every", type=cli.non_negative_int, default=base.checkpoint_every,
        help="steps between checkpoints (0: at the end only)",
    )  # fmt: skip
    group.add_argument(
        "--time-limit-s", type=cli.non_negative_float, default=base.time_limit_s,
        help="stop after the first step that ends this many seconds into training, "
        "evaluating and checkpointing it as the last (default: none)",
    )  # fmt: skip
    group.add_argument("--seed", type=cli.non_negative_int, default=base.seed, help="random seed")
    group.add_argument(
        "--log", type=Path, default=base.log_path, help="JSON-lines log file (default: none)"
    )
    group.add_argument(
        "--checkpoint-dir", type=Path, default=base.checkpoint_dir,
        help="where checkpoints go (default: none)",
    )  # fmt: skip
    group.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir"
    )
    group.add_argument(
        "--single-device", action="store_true", help="no data parallelism across devices"
    )
    group.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    """A `TrainConfig` from parsed `add_training_flags` flags; `overrides` win (a task
    running several models gives each its own `log_path` and `checkpoint_dir`)."""
    config = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        aux_weight=args.aux_weight,
        eval_every=args.eval_every,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        log_path=args.log,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        data_parallel=not args.single_device,
        quiet=args.quiet,
        eval_inner_steps=getattr(args, "eval_inner_steps", None),
        time_limit_s=args.time_limit_s,
    )
    return dataclasses.replace(config, **overrides)


def run_config(args: argparse.Namespace, name: str) -> TrainConfig:
    """The `TrainConfig` of model `name` among several that one task trains: its own log
    `<--out>/logs/<name>.jsonl` and, with `--checkpoint-dir`, its own checkpoint subfolder."""
    checkpoint_dir = None if args.checkpoint_dir is None else args.checkpoint_dir / name
    return config_from_args(
        args, log_path=f"{args.out}/logs/{name}.jsonl", checkpoint_dir=checkpoint_dir
    )

"""The tasks the time-to-accuracy benchmark trains, behind one interface.

A task names its held-out metric and whether lower is better, the settings it is trained in
(the median task's set embedding sizes D, the molecules task's graph convolutions, the
counting task's data set) and its inner steps T, and builds, for a setting, a backend, a
seed and an auxiliary-loss weight (None: the task's), what `training.train` takes: the
model with its EA layer on that backend, the loss, the batches and the evaluation.
`batch_of_sets`: its batches hold sets on the leading axis and its loss is a mean over them
(so a batch can be split into sets, as `--contraction-subset` does). Each
task is the one its own benchmark trains (`benchmarks.tasks`), at that benchmark's defaults.
"""

import argparse
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..shared import training
from ..shared.data.counting import sample_counting_sets
from ..shared.data.median import median_sets
from ..tasks import counting, median, molecules
from . import problem


@dataclasses.dataclass
class Run:
    """One model to train: `model`, `loss_fn`, `next_batch`, `evaluate` as `training.train`
    takes them, and `residual(model)`: the median inner residual `max|∇_y E|` of a trained
    model on held-out sets and the fraction of them whose forward converged, as
    `{"residual": ..., "converged": ...}` (None where the task's layer inputs are not a batch
    of sets)."""

    model: Any
    loss_fn: Callable
    next_batch: Callable
    evaluate: Callable
    residual: Callable | None = None


class Median:
    """Median estimation (paper 5.1): held-out MSE, per set embedding size D (`--dims`)."""

    metric, lower_is_better, setting_name, inner_steps = "mse", True, "D", 5
    batch_of_sets = True

    def settings(self, args: argparse.Namespace) -> list[Any]:
        return args.dims

    def build(self, args: argparse.Namespace, dim: int, backend, seed: int, aux_weight=None) -> Run:
        x_eval, median_eval = _median_held_out(args.eval_sets, args.set_size)
        model = median.build_model("ea", dim, args.width, backend, key=jax.random.PRNGKey(seed + 1))
        data_key = jax.random.PRNGKey(seed)

        def next_batch(step):
            return median_sets(jax.random.fold_in(data_key, step), args.batch_size, args.set_size)

        def evaluate(model, step):
            return {"mse": median.held_out_mse(model, x_eval, median_eval)}

        default = training.TrainConfig().aux_weight
        loss = median.make_loss(default if aux_weight is None else aux_weight)
        return Run(model, loss, next_batch, evaluate, _residual(x_eval[:256]))


class Counting:
    """Class counting (paper 5.2) at `python -m benchmarks counting`'s defaults (the embedded
    8x8 digits): test-set accuracy."""

    metric, lower_is_better, setting_name, inner_steps = "test_accuracy", False, "data", 10
    batch_of_sets = True

    def settings(self, args: argparse.Namespace) -> list[Any]:
        return ["digits"]

    def build(
        self, args: argparse.Namespace, data: str, backend, seed: int, aux_weight=None
    ) -> Run:
        flags = ["--data", data, "--seed", str(seed), *_quick(args), *_aux(aux_weight)]
        task_args = counting.parse_args(flags)
        train_data, test_data, next_batch, evaluate = counting.task_data(task_args)
        model = counting.model_from_args(task_args, "ea", train_data, backend)
        rng = np.random.default_rng([seed, 3])
        images, _ = sample_counting_sets(
            rng, test_data, 64, task_args.set_size, task_args.max_classes
        )
        loss = counting.make_loss(task_args.aux_weight)
        return Run(model, loss, next_batch, evaluate, _residual(jnp.asarray(images)))


class Molecules:
    """Molecular property prediction (paper 5.3) at `python -m benchmarks molecules`'s
    defaults (the embedded FreeSolv) with an EA readout: the validation split's metric, per
    graph convolution (`--convs`)."""

    metric, setting_name, inner_steps = "valid", "conv", 15
    batch_of_sets = False  # batches of graphs

    @property
    def lower_is_better(self) -> bool:
        _, metric, _ = _molecule_data(False)
        return metric in molecules.LOWER_IS_BETTER

    def settings(self, args: argparse.Namespace) -> list[Any]:
        return args.convs

    def build(
        self, args: argparse.Namespace, conv: str, backend, seed: int, aux_weight=None
    ) -> Run:
        task_args = molecules.parse_args(["--seed", str(seed), *_quick(args), *_aux(aux_weight)])
        dataset, _, batching = _molecule_data(args.quick)
        setup = molecules.setup(task_args, dataset, batching, conv, "sum", "ea", backend)
        return Run(setup.model, setup.loss_fn, setup.next_batch, setup.evaluate)


TASKS = {"median": Median(), "counting": Counting(), "molecules": Molecules()}
"""`--task`: the tasks the benchmark can train."""


_solve_stats = eqx.filter_jit(problem.solve_stats)  # compiled once per model structure


def _residual(x_held_out) -> Callable[[Any], dict[str, float]]:
    def residual(model) -> dict[str, float]:
        stats = _solve_stats(model, x_held_out)
        return {
            "residual": float(jnp.median(stats.grad_max_norm)),
            "converged": float(jnp.mean(stats.converged)),
        }

    return residual


@functools.cache
def _median_held_out(num_sets: int, set_size: int):
    return median_sets(jax.random.PRNGKey(10_000), num_sets, set_size)


@functools.cache
def _molecule_data(quick: bool):
    return molecules.load(molecules.parse_args(["--quick"] if quick else []))


def _quick(args: argparse.Namespace) -> list[str]:
    return ["--quick"] if args.quick else []


def _aux(weight: float | None) -> list[str]:
    return [] if weight is None else ["--aux-weight", str(weight)]

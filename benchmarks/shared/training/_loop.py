"""`train`: Adam on a task loss, with logs, evaluation, checkpoints and data parallelism."""

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils

import eqx_agg

from ..results import progress
from ._config import TrainConfig
from ._distributed import initialize_from_environment
from ._sharding import data_parallel_mesh, replicate, shard_batch

LossFn = Callable[[Any, Any, Any], tuple[Any, dict[str, Any]]]
CHECKPOINT = "checkpoint.eqx"
CHECKPOINT_META = "checkpoint.json"


def train(
    model: eqx.Module,
    loss_fn: LossFn,
    next_batch: Callable[[int], Any],
    config: TrainConfig,
    evaluate: Callable[[eqx.Module, int], dict[str, float]] | None = None,
) -> tuple[eqx.Module, dict[str, list[dict[str, Any]]]]:
    """Train `model` with Adam for `config.steps` steps.

    **Arguments:**

    - `model`: an Equinox module; its inexact arrays are trained.
    - `loss_fn`: `loss_fn(model, batch, key) -> (loss, metrics)`, a scalar loss and a dict of
      scalar metrics (logged). Add `config.aux_weight ×` the EA auxiliary loss here.
    - `next_batch`: `next_batch(step) -> batch`, a pytree of arrays with the batch on the
      leading axis; a pure function of `step` makes runs reproducible and resumable.
    - `config`: a `TrainConfig`.
    - `evaluate`: `evaluate(model, step) -> dict of floats`, run before training (step 0),
      every `config.eval_every` steps and after the last step. In a multi-process run it runs
      on every process, with the model's arrays replicated on every device: a computation on
      them runs on all processes at once, and `float` reads a replicated result.

    **Returns:** the trained model and `{"train": [...], "eval": [...]}`, lists of records
    (`{"step", "loss", <metrics>, "seconds"}` and `{"step", "train_seconds", <evaluate's
    keys>}`; `train_seconds` is the wall-clock of this run's training so far, compilation
    included and evaluations excluded), which are
    also written as JSON lines to `config.log_path`. With `config.resume` a run restarts from
    the checkpoint in `config.checkpoint_dir` and its history continues. With
    `config.time_limit_s` the run stops after the first step that ends past the limit (its
    wall-clock, evaluations included, from the end of the step-0 evaluation), which is logged,
    evaluated and checkpointed as the last step would be; its training record carries
    `"time_limit_reached": True`, so `history["train"][-1]["step"]` is the number of steps run.

    Several processes (`initialize_from_environment`) train one model: every process passes
    the same `model` and global batches and returns the same result, and only process 0
    writes the log, the checkpoints and the progress bar.
    """
    initialize_from_environment()
    writes = jax.process_index() == 0
    optimizer = optax.adam(_learning_rate(config))
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    start, history = 0, {"train": [], "eval": []}
    if config.resume and (Path(config.checkpoint_dir) / CHECKPOINT_META).exists():
        (model, opt_state), start, history = load_checkpoint(
            config.checkpoint_dir, (model, opt_state)
        )
    log = _open_log(config.log_path if writes else None, append=start > 0)
    mesh = data_parallel_mesh() if config.data_parallel else None
    if mesh is not None:
        model, opt_state = replicate((model, opt_state), mesh)
    step_fn = _make_step(loss_fn, optimizer)
    if evaluate is not None and config.eval_inner_steps is not None:
        evaluate = _at_inner_steps(evaluate, config.eval_inner_steps)
    base_key = jax.random.PRNGKey(config.seed)
    if evaluate is not None and start == 0:
        _record(history, "eval", {"step": 0, "train_seconds": 0.0, **evaluate(model, 0)}, log)
    clock, evaluating = time.perf_counter(), 0.0
    quiet = config.quiet or not writes
    bar = progress(range(start, config.steps), "train", config.steps - start, quiet)
    try:
        for step in bar:
            batch = next_batch(step)
            if mesh is None:
                batch = jax.tree_util.tree_map(jnp.asarray, batch)
            else:
                batch = shard_batch(batch, mesh)
            key = jax.random.fold_in(base_key, step)
            model, opt_state, loss, metrics = step_fn(model, opt_state, batch, key)
            done = step + 1
            out_of_time = _past_time_limit(loss, clock, config.time_limit_s)
            last = done == config.steps or out_of_time
            if done % config.log_every == 0 or last:
                record = {"step": done, "loss": float(loss)}
                record.update({name: float(value) for name, value in metrics.items()})
                record["seconds"] = time.perf_counter() - clock
                if out_of_time:
                    record["time_limit_reached"] = True
                _record(history, "train", record, log)
                bar.set_postfix(loss=f"{record['loss']:.4g}")
            if evaluate is not None and (done % config.eval_every == 0 or last):
                jax.block_until_ready(loss)
                paused = time.perf_counter()
                train_seconds = paused - clock - evaluating
                record = {"step": done, "train_seconds": train_seconds, **evaluate(model, done)}
                _record(history, "eval", record, log)
                evaluating += time.perf_counter() - paused
            checkpoint_now = config.checkpoint_every and done % config.checkpoint_every == 0
            if writes and config.checkpoint_dir is not None and (checkpoint_now or last):
                save_checkpoint(config.checkpoint_dir, (model, opt_state), done, history)
            if last:
                break
    finally:
        if log is not None:
            log.close()
    return model, history


def count_parameters(model) -> int:
    """Number of array elements in `model` (the parameter count the result tables report)."""
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array)))


def _past_time_limit(loss, clock: float, limit_s: float | None) -> bool:
    """Whether the step that computed `loss` ended more than `limit_s` seconds after `clock`
    (it waits for the step to finish; never past a limit of None). Every process of a
    multi-process run follows process 0's clock, so all stop at the same step."""
    if limit_s is None:
        return False
    jax.block_until_ready(loss)
    past = time.perf_counter() - clock > limit_s
    if jax.process_count() > 1:
        past = bool(multihost_utils.broadcast_one_to_all(np.asarray(past)))
    return past


def _at_inner_steps(evaluate, steps: int):
    """`evaluate` of the model with `steps` inner steps in every solved layer."""
    return lambda model, step: evaluate(eqx_agg.with_inner_steps(model, steps), step)


def _learning_rate(config: TrainConfig) -> float | optax.Schedule:
    if config.lr_schedule == "cosine":
        return optax.cosine_decay_schedule(config.lr, config.steps, alpha=0.01)
    return config.lr


def _make_step(loss_fn: LossFn, optimizer: optax.GradientTransformation):
    @eqx.filter_jit
    def step(model, opt_state, batch, key):
        (loss, metrics), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, batch, key)
        updates, opt_state = optimizer.update(
            grads, opt_state, eqx.filter(model, eqx.is_inexact_array)
        )
        return eqx.apply_updates(model, updates), opt_state, loss, metrics

    return step


def save_checkpoint(directory, state, step: int, history: dict) -> None:
    """Write `state` (any pytree, e.g. `(model, opt_state)`) with
    `eqx.tree_serialise_leaves` to `directory/checkpoint.eqx`, and the step and history to
    `directory/checkpoint.json`; each file is replaced atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (CHECKPOINT + ".tmp")
    eqx.tree_serialise_leaves(tmp, state)
    tmp.replace(directory / CHECKPOINT)
    tmp = directory / (CHECKPOINT_META + ".tmp")
    tmp.write_text(json.dumps({"step": step, "history": history}, default=float))
    tmp.replace(directory / CHECKPOINT_META)


def load_checkpoint(directory, like) -> tuple[Any, int, dict]:
    """Read a checkpoint written by `save_checkpoint` into a pytree shaped like `like`;
    returns `(state, step, history)`."""
    directory = Path(directory)
    meta = json.loads((directory / CHECKPOINT_META).read_text())
    state = eqx.tree_deserialise_leaves(directory / CHECKPOINT, like)
    return state, meta["step"], meta["history"]


def _open_log(path, append: bool):
    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a" if append else "w")


def _record(history: dict, kind: str, record: dict, log) -> None:
    history[kind].append(record)
    if log is not None:
        log.write(json.dumps({"kind": kind, **record}, default=float) + "\n")
        log.flush()

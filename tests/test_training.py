"""The shared training loop: learning, determinism, logs, checkpoints and resume, backend
flags, and data parallelism on two CPU devices."""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import solvers
from benchmarks.shared import training

from .helpers import tree_allclose


def regression_problem():
    """A small MLP fitting `x²`, with batches that are a pure function of the step."""

    def next_batch(step):
        x = jax.random.normal(jax.random.PRNGKey(step), (16, 1))
        return x, x[:, 0] ** 2

    def loss_fn(model, batch, key):
        x, y = batch
        noise = 1e-3 * jax.random.normal(key, y.shape)  # uses the per-step key
        mse = jnp.mean((jax.vmap(model)(x)[:, 0] - y - noise) ** 2)
        return mse, {"mse": mse}

    model = eqx.nn.MLP(1, 1, 16, 2, key=jax.random.PRNGKey(0))
    return model, loss_fn, next_batch


def arrays(model):
    return eqx.filter(model, eqx.is_array)


def held_out_loss(model, step):
    x = jnp.linspace(-2, 2, 64)[:, None]
    return {"mse": float(jnp.mean((jax.vmap(model)(x)[:, 0] - x[:, 0] ** 2) ** 2))}


def test_trains_logs_and_is_deterministic(tmp_path):
    model, loss_fn, next_batch = regression_problem()
    config = training.TrainConfig(
        steps=60, lr=1e-2, eval_every=30, log_every=20, quiet=True, log_path=tmp_path / "a.jsonl"
    )
    trained, history = training.train(model, loss_fn, next_batch, config, held_out_loss)
    assert [r["step"] for r in history["train"]] == [20, 40, 60]
    assert [r["step"] for r in history["eval"]] == [0, 30, 60]
    assert history["eval"][-1]["mse"] < 0.5 * history["eval"][0]["mse"]
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in lines] == [
        ("eval", 0), ("train", 20), ("eval", 30), ("train", 40), ("train", 60), ("eval", 60)
    ]  # fmt: skip
    assert lines[1]["loss"] == pytest.approx(history["train"][0]["loss"])
    again, _ = training.train(model, loss_fn, next_batch, config, held_out_loss)
    assert tree_allclose(arrays(trained), arrays(again), rtol=0, atol=0)
    other, _ = training.train(
        model, loss_fn, next_batch, training.TrainConfig(steps=60, lr=1e-2, seed=1, quiet=True)
    )
    # The seed reaches loss_fn's key.
    assert not tree_allclose(arrays(trained), arrays(other), rtol=0, atol=0)


def test_resume_continues_exactly(tmp_path):
    model, loss_fn, next_batch = regression_problem()
    straight, _ = training.train(
        model, loss_fn, next_batch, training.TrainConfig(steps=20, lr=1e-2, quiet=True)
    )
    first = training.TrainConfig(
        steps=10, lr=1e-2, log_every=5, quiet=True, checkpoint_dir=tmp_path / "ckpt"
    )
    training.train(model, loss_fn, next_batch, first)
    resumed_config = training.TrainConfig(
        steps=20, lr=1e-2, log_every=5, quiet=True, checkpoint_dir=tmp_path / "ckpt", resume=True
    )
    resumed, history = training.train(model, loss_fn, next_batch, resumed_config)
    assert tree_allclose(arrays(resumed), arrays(straight), rtol=1e-12, atol=1e-12)
    assert [r["step"] for r in history["train"]] == [5, 10, 15, 20]


def test_time_limit_stops_after_the_step_past_it(tmp_path):
    """A limit of 0 s: the first step ends past it, and is logged, evaluated and checkpointed
    as the last; the model is the one of a 1-step run."""
    model, loss_fn, next_batch = regression_problem()
    config = training.TrainConfig(
        steps=50, lr=1e-2, log_every=20, eval_every=20, quiet=True, time_limit_s=0.0,
        checkpoint_dir=tmp_path,
    )  # fmt: skip
    limited, history = training.train(model, loss_fn, next_batch, config, held_out_loss)
    assert [(r["step"], r.get("time_limit_reached")) for r in history["train"]] == [(1, True)]
    assert [r["step"] for r in history["eval"]] == [0, 1]
    one_step, _ = training.train(
        model, loss_fn, next_batch, training.TrainConfig(steps=1, lr=1e-2, quiet=True)
    )
    assert tree_allclose(arrays(limited), arrays(one_step), rtol=0, atol=0)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 1
    with pytest.raises(ValueError, match="time_limit_s must be >= 0"):
        training.TrainConfig(time_limit_s=-1.0)


@pytest.mark.parametrize("schedule", training.LR_SCHEDULES)
def test_an_interrupted_run_resumes_exactly(tmp_path, schedule):
    model, loss_fn, next_batch = regression_problem()
    config = training.TrainConfig(steps=20, lr=1e-2, lr_schedule=schedule, quiet=True)
    straight, _ = training.train(model, loss_fn, next_batch, config)

    def interrupted_at_12(step):
        if step == 12:
            raise KeyboardInterrupt
        return next_batch(step)

    config = dataclasses.replace(
        config, checkpoint_every=5, checkpoint_dir=tmp_path / "ckpt", resume=True
    )
    with pytest.raises(KeyboardInterrupt):
        training.train(model, loss_fn, interrupted_at_12, config)
    resumed, history = training.train(model, loss_fn, next_batch, config)  # from step 10
    assert tree_allclose(arrays(resumed), arrays(straight), rtol=1e-12, atol=1e-12)
    assert [r["step"] for r in history["train"]] == [10, 20]


@pytest.mark.parametrize("schedule", training.LR_SCHEDULES)
def test_lr_schedule_sets_each_step_size(schedule):
    """On a linear loss Adam's step is exactly the learning rate, so the parameter's path
    is the running sum of the schedule: constant, or cosine from lr down to lr / 100."""
    steps, lr = 40, 0.1
    config = training.TrainConfig(steps=steps, lr=lr, lr_schedule=schedule, quiet=True)
    trained, _ = training.train(
        jnp.zeros(()), lambda p, batch, key: (p, {}), lambda step: jnp.zeros(()), config
    )
    t = np.arange(steps)
    cosine = lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * t / steps)))
    expected = np.full(steps, lr) if schedule == "constant" else cosine
    np.testing.assert_allclose(trained, -expected.sum(), rtol=1e-6)


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    model, loss_fn, next_batch = regression_problem()
    config = training.TrainConfig(steps=5, quiet=True, checkpoint_dir=tmp_path)
    trained, history = training.train(model, loss_fn, next_batch, config)
    template = (model, optax.adam(config.lr).init(eqx.filter(model, eqx.is_inexact_array)))
    (loaded, _), step, loaded_history = training.load_checkpoint(tmp_path, template)
    assert step == 5 and loaded_history == json.loads(json.dumps(history))
    x = jnp.linspace(-1, 1, 7)[:, None]
    np.testing.assert_array_equal(jax.vmap(loaded)(x), jax.vmap(trained)(x))


def test_flags_build_config_and_backends():
    parser = argparse.ArgumentParser()
    training.add_training_flags(parser, steps=7)
    training.add_backend_flags(parser, inner_steps=5)
    args = parser.parse_args(["--lr", "0.01", "--aux-weight", "0.5", "--seed", "3"])
    config = training.config_from_args(args, eval_every=2)
    assert (config.steps, config.lr, config.aux_weight, config.seed) == (7, 0.01, 0.5, 3)
    assert config.eval_every == 2 and config.data_parallel
    backend = training.backend_from_args(args)
    assert isinstance(backend, solvers.Unrolled) and backend.steps == 5
    args = parser.parse_args(
        ["--backend", "implicit", "truncated", "--inner-steps", "4", "6", "--truncate-k", "3"]
    )
    first, second = training.backend_from_args(args, 0), training.backend_from_args(args, 1)
    assert isinstance(first, solvers.Implicit) and first.steps == 4
    assert isinstance(second, solvers.Truncated) and (second.steps, second.k) == (6, 3)
    with pytest.raises(ValueError, match="names 2 layers, asked for layer 2"):
        training.backend_from_args(args, 2)
    with pytest.raises(SystemExit):  # argparse: invalid choice 'adjoint'
        parser.parse_args(["--backend", "adjoint"])
    with pytest.raises(ValueError, match="resume needs a checkpoint_dir"):
        training.TrainConfig(resume=True)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        training.TrainConfig(steps=0)


DATA_PARALLEL = textwrap.dedent(
    """
    import equinox as eqx, jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    from benchmarks.shared import training
    from tests.test_training import regression_problem

    assert jax.device_count() == 2, jax.devices()
    model, loss_fn, next_batch = regression_problem()
    mesh = training.data_parallel_mesh()
    sharded = training.shard_batch(next_batch(0), mesh)
    assert len(sharded[0].sharding.device_set) == 2
    assert sharded[0].addressable_shards[0].data.shape == (8, 1)
    results = {}
    for parallel in (True, False):
        config = training.TrainConfig(steps=3, lr=1e-2, quiet=True, data_parallel=parallel)
        results[parallel], _ = training.train(model, loss_fn, next_batch, config)
    leaf = results[True].layers[0].weight
    assert len(leaf.sharding.device_set) == 2 and leaf.sharding.is_fully_replicated
    leaves = [jax.tree.leaves(eqx.filter(results[p], eqx.is_array)) for p in (True, False)]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
    print("DATA PARALLEL OK")
    """
)


def test_data_parallel_step_equals_single_device():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DATA PARALLEL OK" in done.stdout


def test_shard_batch_rejects_uneven_batches():
    mesh = jax.sharding.Mesh(np.asarray(jax.devices() * 1), ("batch",))
    training.shard_batch({"x": jnp.ones((3, 2))}, mesh)  # one device: any size splits
    with pytest.raises(ValueError, match="leading axis"):
        training.shard_batch({"x": jnp.ones(())}, mesh)


def test_count_parameters_counts_every_weight_and_bias():
    model, _, _ = regression_problem()  # MLP 1 → 16 → 16 → 1
    assert training.count_parameters(model) == (1 * 16 + 16) + (16 * 16 + 16) + (16 * 1 + 1)

"""Backend selection (`eqx_agg.recommend_backend`): candidates are backend values, the
recommendation follows the measured probes, and `python -m benchmarks select` reports it."""

import argparse
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_agg
import solvers
from benchmarks.backends import select
from benchmarks.tasks import counting

from .helpers import neural_layer


def test_a_converged_forward_without_parameters_keeps_the_fastest_per_step(getkey):
    """Mean has nothing to train: every candidate computes the mean and its gradient, no
    training progress ranks them, so the fastest forward+backward is kept."""
    options = dict(lr=0.25, momentum=0.3, gtol=1e-6)
    layer = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean(), solvers.Unrolled(10, **options))
    x = jax.random.normal(getkey(), (3, 6, 2))
    candidates = [solvers.Unrolled(40, **options), solvers.Implicit(40, **options),
                  solvers.Unrolled(40, **options | {"lr": 0.2})]  # fmt: skip
    rec = eqx_agg.recommend_backend(layer, x, candidates=candidates, tol=1e-4, repeats=1,
                                    train_steps=5)  # fmt: skip
    rows = {m["candidate"]: m for m in rec.measurements}
    assert len(rows) == 4 and sum(name.startswith("exact reference") for name in rows) == 1
    for m in rows.values():
        assert m["residual"] < 1e-4 and m["cosine_to_exact"] > 0.99
    names = [name for name in rows if not name.startswith("exact")]
    assert names[2] == names[0] + " #3"  # two candidates that print alike stay apart
    assert rec.reasons[0] == (
        f"{', '.join(names)} computed the argmin (residual < tol=0.0001) and its gradient "
        "(cosine to the exact one >= agreement=0.99)"
    )
    assert rec.reasons[1].startswith("no candidate lowered the training probe's loss")
    assert rec.name == min(names, key=lambda name: rows[name]["ms"])
    assert isinstance(rec.solver, (solvers.Unrolled, solvers.Implicit)) and rec.solver.throw


def test_candidates_without_a_method_run_the_layers_own(getkey):
    """Unrolled and Checkpointed at the same T are the same layer (the same gradient), so they
    reach the goal (half the best progress) at the same training step, each in its own time
    per step: within a generous `separation` the reasons say that the probe cannot separate
    them. Built without `method=`, both run the layer's current method, its lr included;
    Implicit runs the layer's default to tolerance, Newton."""
    layer = neural_layer(solvers.Unrolled(4, lr=0.3))
    x = jax.random.normal(getkey(), (4, 6, 3))
    candidates = [solvers.Unrolled(4), solvers.Checkpointed(4), solvers.Implicit(50)]
    rec = eqx_agg.recommend_backend(layer, x, candidates=candidates, repeats=1, train_steps=20,
                                    train_lr=1e-2, slack=0.5, separation=10.0)  # fmt: skip
    rows = rec.measurements
    assert [(m["backend"], m["method"]) for m in rows[:3]] == [
        ("unrolled", "Nesterov"), ("checkpointed", "Nesterov"), ("implicit", "Newton")
    ]  # fmt: skip
    assert rows[0]["cosine_to_exact"] == pytest.approx(rows[1]["cosine_to_exact"], rel=1e-9)
    assert rows[2]["train_steps"] < rows[0]["train_steps"]  # Newton's steps cost more
    assert isinstance(rec.solver, (solvers.Unrolled, solvers.Checkpointed))
    assert eqx.tree_equal(rec.solver.method, layer.solver.method)
    assert any(r.startswith("the probe cannot separate") for r in rec.reasons)


def test_each_candidate_trains_for_the_time_the_fastest_took(getkey):
    """Training is paid in time: a candidate 100x slower per step than the fastest trains
    for the fastest's training time, a few steps, not for all of `train_steps`."""
    layer = neural_layer(solvers.Unrolled(2))
    x = jax.random.normal(getkey(), (4, 6, 3))
    candidates = [solvers.Unrolled(300), solvers.Unrolled(2)]
    rec = eqx_agg.recommend_backend(layer, x, candidates=candidates, repeats=1, train_steps=30)
    slow, fast = rec.measurements[:2]
    assert (slow["T"], fast["T"]) == (300, 2)
    assert fast["train_steps"] == 30 and 1 <= slow["train_steps"] < 30
    assert "that Unrolled(steps=2) [Nesterov], the fastest per step, took" in rec.reasons[1]


def test_the_counting_model_probes_its_layer_on_encoded_digits():
    args = select._parser().parse_args(["--model", "counting", "--quick"])
    layer, x = select.counting_layer(args)
    task = counting.parse_args(["--quick"])
    assert x.shape == (task.batch_size, task.set_size, task.embed)
    assert isinstance(layer, eqx_agg.EquilibriumAggregation)
    assert isinstance(layer.solver, solvers.Unrolled) and layer.solver.steps == 10  # paper's T
    assert float(jnp.std(x)) > 0  # the encoder's outputs, sets of distinct images
    assert (args.batch, args.set_size, args.in_size) == x.shape  # what results.json records
    with pytest.raises(ValueError, match="float32"):
        select.counting_layer(select._parser().parse_args(["--model", "counting", "--dtype",
                                                           "float64"]))  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("model", ["median", "counting"])
def test_recommends_the_fastest_to_train(tmp_path, model):
    select.main(["--model", model, "--quick", "--quiet", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    rec = payload["recommendation"]
    candidates = [r for r in payload["records"] if not r["candidate"].startswith("exact")]
    assert len(candidates) == len(select.QUICK["candidates"])
    assert all("time_to_goal_s" in r for r in candidates)  # every candidate trained
    chosen = next(r for r in candidates if r["candidate"] == rec["name"])
    assert chosen["time_to_goal_s"] < np.inf
    assert chosen["time_to_goal_s"] == min(r["time_to_goal_s"] for r in candidates)
    assert "--" not in " ".join(rec["reasons"])  # reasons name the function's arguments
    assert "in never" not in " ".join(rec["reasons"])  # a goal not reached reads as such


def test_candidates_on_the_command_line():
    assert select.candidate("truncated:20:5") == solvers.Truncated(20, 5)
    assert select.candidate("implicit").steps == 1000
    assert select.candidate("phantom:100:3").k == 3
    assert select.candidate("phantom") == solvers.Phantom()  # the backend's own defaults
    assert select.candidate("truncated:30") == solvers.Truncated(30)
    with pytest.raises(argparse.ArgumentTypeError, match="one of unrolled, checkpointed"):
        select.candidate("newton:10")  # a method is not a backend
    for bad in ("unrolled:10:2", "unrolled:0", "truncated:a", "truncated:2:5"):
        with pytest.raises(argparse.ArgumentTypeError, match=bad):
            select.candidate(bad)


def test_bad_input(without_runtime_checks):
    layer = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean())
    with pytest.raises(ValueError, match=r"\[b, n, d\]"):
        eqx_agg.recommend_backend(layer, jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="candidates is empty"):
        eqx_agg.recommend_backend(layer, jnp.zeros((1, 4, 2)), candidates=[])
    with pytest.raises(TypeError, match="solvers backends"):
        eqx_agg.recommend_backend(layer, jnp.zeros((1, 4, 2)), candidates=["unrolled"])

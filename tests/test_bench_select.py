"""Backend selection (`eqx_agg.recommend_backend`): the recommendation follows the measured
probes, and `python -m benchmarks select` reports it."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_agg
import solvers
from benchmarks.backends import select


def test_recommends_implicit_when_converged(getkey):
    solver = solvers.Unrolled(steps=10, lr=0.25, momentum=0.3, gtol=1e-6)
    layer = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean(), solver)
    x = jax.random.normal(getkey(), (3, 6, 2))
    rec = eqx_agg.recommend_backend(layer, x, steps=(40, 60), tol=1e-4, repeats=1)
    assert (rec.backend, rec.steps, rec.k) == ("implicit", 40, None)
    assert rec.reasons[0].startswith("the forward converged at T=40")
    assert isinstance(rec.solver, solvers.Implicit) and rec.solver.steps == 40
    assert rec.solver.throw  # the recommended solver raises as a layer's own does
    assert {(m["backend"], m["T"]) for m in rec.measurements} == {
        ("unrolled", 40), ("implicit", 40), ("unrolled", 60), ("implicit", 60)
    }  # fmt: skip
    for m in rec.measurements:
        assert m["residual"] < 1e-4 and m["cosine_to_unrolled_max_T"] > 0.99


@pytest.mark.slow
def test_recommends_the_fastest_to_train_when_not_converged(tmp_path):
    select.main(["--quick", "--quiet", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    rec = payload["recommendation"]
    assert rec["reasons"][0].startswith("the forward did not converge")
    residual = {(r["backend"], r["T"]): r["residual"] for r in payload["records"]}
    assert min(residual.values()) >= 1e-3
    trained = [r for r in payload["records"] if "time_to_goal_s" in r]
    # every Unrolled T trained, and the Truncated k < T at the T Unrolled reached the goal first
    assert {r["T"] for r in trained if r["backend"] == "unrolled"} == {2, 4}
    unrolled = min((r for r in trained if r["backend"] == "unrolled"),
                   key=lambda r: r["time_to_goal_s"])  # fmt: skip
    truncated = [r for r in trained if r["backend"] == "truncated"]
    assert {(r["T"], r["k"]) for r in truncated} == {
        (unrolled["T"], k) for k in (1, 2) if k < unrolled["T"]
    }
    chosen = next(r for r in trained if (r["backend"], r["T"], r["k"]) == (
        rec["backend"], rec["steps"], rec["k"]))  # fmt: skip
    assert chosen["time_to_goal_s"] < np.inf
    assert chosen["time_to_goal_s"] == min(r["time_to_goal_s"] for r in [unrolled, *truncated])
    assert "--" not in " ".join(rec["reasons"])  # reasons name the function's arguments
    assert "in never" not in " ".join(rec["reasons"])  # a goal not reached reads as such


def test_bad_batch_shape(without_runtime_checks):
    layer = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean())
    with pytest.raises(ValueError, match=r"\[b, n, d\]"):
        eqx_agg.recommend_backend(layer, jnp.zeros((4, 2)))

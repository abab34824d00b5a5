"""The convergence suite in quick mode: per-step histories for each condition, measured on the
held-out batch the suite says it uses."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import solvers
from benchmarks.backends import convergence, problem


@pytest.mark.slow
def test_convergence_quick(tmp_path):
    convergence.main(["--quick", "--quiet", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["suite"] == "convergence" and (tmp_path / "convergence.png").exists()
    conditions = ["untrained", "trained", "trained + aux loss"]
    assert [r["condition"] for r in payload["records"]] == conditions
    assert [r["train_steps"] for r in payload["records"]] == [0, 3, 3]
    for condition in conditions:
        history = payload["histories"][condition]
        assert len(history["grad_max_norm_mean"]) == 6  # --eval-steps under --quick
        assert np.all(np.isfinite(history["energy_mean"]))
    # The first step evaluates the gradient at y0 = 0: recompute it from the energy itself.
    args = problem.apply_quick(convergence._parser(), ["--quick"], **convergence.QUICK)
    model, x, _ = problem.problem_from_args(args, solvers.Unrolled(args.steps, throw=False))
    energy = model.pool.energy
    y0 = jnp.zeros(energy.out_size, x.dtype)
    first = [float(jnp.max(jnp.abs(jax.grad(lambda y, xi=xi: energy(xi, y))(y0)))) for xi in x]
    untrained = payload["histories"]["untrained"]
    np.testing.assert_allclose(untrained["grad_max_norm_mean"][0], np.mean(first), rtol=1e-5)
    np.testing.assert_allclose(untrained["grad_max_norm_max"][0], np.max(first), rtol=1e-5)
    assert payload["records"][0]["mse"] != payload["records"][1]["mse"]  # training changed it

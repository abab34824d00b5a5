"""The convergence suite in quick mode: per-step histories for each condition."""

import json

import numpy as np

from benchmarks import convergence


def test_convergence_quick(tmp_path):
    convergence.main(["--quick", "--quiet", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["suite"] == "convergence"
    assert (tmp_path / "convergence.png").exists()
    conditions = ["untrained", "trained", "trained + aux loss"]
    assert [r["condition"] for r in payload["records"]] == conditions
    assert [r["train_steps"] for r in payload["records"]] == [0, 3, 3]
    for condition in conditions:
        history = payload["histories"][condition]
        mean, top = np.array(history["grad_max_norm_mean"]), np.array(history["grad_max_norm_max"])
        assert mean.shape == top.shape == (6,)  # --eval-steps under --quick
        assert np.all(np.isfinite(history["energy_mean"]))
        assert np.all(mean <= top + 1e-12) and np.all(mean >= 0)
    untrained, trained, _ = payload["records"]
    assert untrained["mse"] != trained["mse"]  # training changed the model

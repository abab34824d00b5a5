"""`python -m benchmarks molecules --quick`: a few training steps end to end."""

import json

import numpy as np
import pytest

from benchmarks.tasks import molecules


@pytest.mark.slow
def test_quick_run_trains_and_writes_results(tmp_path):
    records = molecules.main(["--quick", "--quiet", "--out", str(tmp_path)])
    assert [(r["conv"], r["readout"], r["backend"]) for r in records] == [
        ("gin", "sum", "-"),
        ("gin", "ea", "implicit"),
    ]
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["config"]["metric"] == "rmse"
    for record in records:
        history = payload["histories"][molecules._label(record)]
        losses = [r["task_loss"] for r in history["train"]]
        assert len(losses) == 20  # one batch (8 graphs), seen at every step
        assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])  # the loss decreases
        assert np.isfinite(record["valid_rmse"]) and np.isfinite(record["test_rmse"])
        assert record["step_ms"] > 0
    assert (tmp_path / "molecules.png").exists() and (tmp_path / "report.md").exists()

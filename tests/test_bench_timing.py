"""The timing suite in quick mode: every model timed, each backend row saying what it computed,
and targets that follow the measured rows."""

import json

import numpy as np
import pytest

from benchmarks.backends import timing
from benchmarks.shared import strategies
from benchmarks.shared.peers import pyg


@pytest.mark.slow
def test_timing_quick(tmp_path):
    timing.main(["--quick", "--quiet", "--inner-steps", "2", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["suite"] == "timing" and (tmp_path / "time_vs_steps.png").exists()
    rows = {(r["model"], r["T"]): r for r in payload["records"]}
    expected = {("sum", None), ("attention", None)}
    expected |= {(name, 2) for name in strategies.BACKENDS}
    if pyg.available() is None:
        expected |= {("pyg", 2)}
    else:
        assert payload["peer_skipped"] == pyg.available()
    assert set(rows) == expected
    for r in rows.values():
        assert len(r["repeats_ms"]) == 2
        assert min(r["repeats_ms"]) <= r["ms"] <= max(r["repeats_ms"])
    for name in strategies.BACKENDS:
        row = rows[name, 2]
        assert 0 <= row["converged"] <= 1 and row["forward_steps"] <= 2
        assert (row["backward_failed"] is None) == (name != "implicit")
    assert payload["gradient_ms"] > 0
    assert all(0 < rows[name, 2]["floor"] < np.inf for name in ("unrolled", "implicit"))
    assert all("floor" not in rows[name, None] for name in ("sum", "attention"))
    # the quick problem does not converge in 2 steps: Implicit's target is never met there
    targets = {t["target"]: t for t in payload["targets"]}
    implicit_2 = next(
        t for name, t in targets.items() if name.startswith("Implicit") and "T=2" in name
    )
    assert not implicit_2["met"] and "not comparable" in implicit_2["why"]


def test_timing_targets():
    records = [
        {"model": "unrolled", "T": 10, "ms": 2.0},
        {"model": "implicit", "T": 10, "ms": 1.2, "converged": 1.0, "backward_failed": 0},
        {"model": "unrolled", "T": 20, "ms": 4.0},
        {"model": "implicit", "T": 20, "ms": 3.0, "converged": 0.5, "backward_failed": 0},
        {"model": "unrolled", "T": 30, "ms": 6.0},
        {"model": "implicit", "T": 30, "ms": 2.0, "converged": 1.0, "backward_failed": 0},
        {"model": "pyg", "T": 10, "ms": 3.0},
    ]
    converged, half, fast, peer = timing.targets_of(records)
    assert "<= 0.5x" in converged["target"] and not converged["met"]
    np.testing.assert_allclose(converged["measured"], 0.6)
    # faster than Unrolled, but unconverged: not the time of an implicit gradient
    assert "50% converged" in half["target"] and not half["met"]
    assert "not comparable" in half["why"]
    assert fast["met"] and "converged forward" in fast["target"]
    assert peer["measured"] == 1.5 and not peer["met"]

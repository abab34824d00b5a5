"""The timing suite in quick mode: every model timed, ratios taken within the run."""

import json

import pytest

from benchmarks import timing
from benchmarks.peers import pyg


def test_timing_quick(tmp_path):
    timing.main(["--quick", "--quiet", "--steps", "2", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["suite"] == "timing"
    assert (tmp_path / "time_vs_steps.png").exists()
    rows = {(r["model"], r["T"]): r for r in payload["records"]}
    expected = {("sum", None), ("attention", None), ("unrolled", 2), ("implicit", 2),
                ("truncated", 2)}  # fmt: skip
    if pyg.available() is None:
        expected.add(("pyg", 2))
    else:
        assert payload["peer_skipped"] == pyg.available()
    assert set(rows) == expected
    for r in rows.values():
        assert r["seconds"] > 0 and len(r["repeats_s"]) == 2
        assert r["vs_sum"] == pytest.approx(r["seconds"] / rows["sum", None]["seconds"])
    assert rows["unrolled", 2]["vs_unrolled"] == 1
    ratio = rows["implicit", 2]["seconds"] / rows["unrolled", 2]["seconds"]
    assert rows["implicit", 2]["vs_unrolled"] == pytest.approx(ratio)


def test_timing_targets():
    records = [
        {"model": "unrolled", "T": 10, "seconds": 2.0},
        {"model": "implicit", "T": 10, "seconds": 1.0},
        {"model": "pyg", "T": 10, "seconds": 3.0},
    ]
    implicit, peer = timing.targets_of(records)
    assert implicit["measured"] == 0.5 and implicit["met"]
    assert peer["measured"] == 1.5 and not peer["met"]

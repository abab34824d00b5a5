"""The memory suite in quick mode: bytes grow with T only where steps are taped."""

import json

import pytest

from benchmarks.backends import memory


@pytest.mark.slow
def test_memory_quick(tmp_path):
    memory.main(["--quick", "--quiet", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["suite"] == "memory" and {"device", "jax", "jaxlib"} <= set(
        payload["environment"]
    )
    assert (tmp_path / "memory_vs_steps.png").exists()
    total = {(r["backend"], r["T"]): r["total_MB"] for r in payload["records"]}
    for r in payload["records"]:
        parts = r["temp_MB"] + r["argument_MB"] + r["output_MB"]
        assert abs(r["total_MB"] - parts) < 1e-9 and parts > 0
    assert total["unrolled", 4] > total["unrolled", 1]  # the tape grows with T
    assert total["truncated", 4] < total["unrolled", 4]  # only k = 2 steps taped
    assert total["implicit", 4] < total["unrolled", 4]
    assert abs(total["implicit", 4] / total["implicit", 1] - 1) < 0.1  # flat in T


def test_targets_report_misses():
    records = [
        {"backend": "unrolled", "T": 5, "total_MB": 100},
        {"backend": "unrolled", "T": 100, "total_MB": 1000},
        {"backend": "implicit", "T": 5, "total_MB": 100},
        {"backend": "implicit", "T": 100, "total_MB": 200},
    ]
    ratio, flat = memory.targets_of(records)
    assert ratio["measured"] == 0.2 and not ratio["met"] and ratio["why"]
    assert flat["measured"] == 1.0 and not flat["met"] and flat["why"]


def test_met_targets_carry_no_reason():
    records = [
        {"backend": "unrolled", "T": 5, "total_MB": 100},
        {"backend": "unrolled", "T": 100, "total_MB": 1000},
        {"backend": "implicit", "T": 5, "total_MB": 50},
        {"backend": "implicit", "T": 100, "total_MB": 50},
    ]
    for goal in memory.targets_of(records):
        assert goal["met"] and goal["why"] == ""

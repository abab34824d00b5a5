"""`make bench`'s command in --quick mode: every suite runs, and the summary report opens
with advice and this run's recommendation, lists every suite's targets and its run times."""

import json

import pytest

from benchmarks import default


@pytest.mark.slow
def test_default_quick_report_opens_with_advice(tmp_path):
    default.main(["--quick", "--quiet", "--no-peers", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "default" / "results.json").read_text())
    report = (tmp_path / "default" / "report.md").read_text()
    opening = report.split("\n\n")[1]
    assert opening.startswith("**Advice.**")
    assert "This run's recommendation for the median model" in report
    assert "in never" not in report
    assert {r["suite"] for r in payload["records"]} >= {"accuracy", "memory", "timing"}
    assert [r["suite"] for r in payload["run_times"]] == list(default.SUITES)
    assert all(r["run time (s)"] > 0 for r in payload["run_times"])
    for suite in default.SUITES:
        assert (tmp_path / suite / "report.md").exists()


def test_peer_comparisons_stand_apart():
    rows = [
        {"suite": "timing", "target": "Implicit fwd+bwd at T=10 <= 0.5x Unrolled's"},
        {"suite": "timing", "target": "our Unrolled >= 2x faster than PyG at T=10"},
    ]
    ours, peers = default.apart_from_peers(rows)
    assert ours == rows[:1] and peers == rows[1:]

"""`python -m benchmarks gpu --quick` on a CPU: every part runs and reports, the median task
stops at its time limit, and the report says that no GPU was found."""

import json

import pytest

from benchmarks import gpu
from benchmarks.shared import strategies


@pytest.mark.slow
def test_gpu_quick_on_cpu(tmp_path):
    gpu.main(["--quick", "--quiet", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    report = (tmp_path / "report.md").read_text()
    assert payload["gpu_found"] is False
    assert "No GPU found" in report and "jax " in report
    folders = [part.folder for part in gpu.PARTS] + [gpu.MEDIAN.folder]
    assert [r["part"] for r in payload["records"]] == [
        part.title for part in (*gpu.PARTS, gpu.MEDIAN)
    ]
    for folder in folders:
        assert (tmp_path / folder / "report.md").exists()
        assert payload["tables"][folder], f"{folder}: empty table"
        assert f"({folder}/report.md)" in report
    for folder in ("timing-counting", "timing-molpcba"):
        backends = {row["model"] for row in payload["tables"][folder]}
        assert set(strategies.BACKENDS) <= backends
    for folder in ("memory-counting", "memory-molpcba"):
        backends = {row["backend"] for row in payload["tables"][folder]}
        assert backends == set(strategies.BACKENDS)
    (median,) = payload["tables"]["median"]
    assert 1 <= median["steps_run"] < median["steps_requested"]
    assert median["time_limit_s"] <= gpu.QUICK_MEDIAN_LIMIT_S
    assert payload["total_s"] >= sum(r["wall_s"] for r in payload["records"])

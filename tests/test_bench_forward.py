"""`python -m benchmarks forward --quick`: each forward method on the ten random learned
potentials; Newton converges on every one in a handful of steps (the issue's claim)."""

import json

import pytest

from benchmarks.backends import forward


@pytest.mark.slow
def test_forward_quick(tmp_path):
    forward.main(["--quick", "--quiet", "--out", str(tmp_path)])
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    assert {r["method"] for r in records} == set(forward.METHODS)
    assert len(records) == 10 * len(forward.METHODS)
    newton = [r for r in records if r["method"] == "newton"]
    assert all(r["converged"] == 1.0 and r["steps"] <= 20 for r in newton)
    assert all(r["tolerance"] == 1e-8 and r["ms"] > 0 for r in records)
    assert "newton" in (tmp_path / "report.md").read_text()

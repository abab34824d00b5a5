"""The gradient-accuracy suite in quick mode: the reference, and what each backend's
gradient must be."""

import json

import numpy as np
import pytest

from benchmarks.backends import accuracy
from benchmarks.shared import strategies

# Seed 1: with seed 0 the quick model's tiny potential has two minima whose basins meet
# within 1e-7 of its parameters, so finite differences there jump between them.
ARGS = ["--quick", "--quiet", "--inner-steps", "2", "--k-sweep-steps", "2"]
ARGS += ["--truncate-ks", "1", "2", "--seed", "1"]


@pytest.mark.slow
def test_accuracy_quick(tmp_path):
    accuracy.main([*ARGS, "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["suite"] == "accuracy"
    assert {"device", "jax", "jaxlib"} <= set(payload["environment"])
    assert payload["config"]["dtype"] == "float64"
    for name in ("results.csv", "report.md", "accuracy_vs_steps.png", "truncated_k.png",
                 "accuracy_at_defaults.png"):  # fmt: skip
        assert (tmp_path / name).exists()
    assert "At each backend's default settings" in (tmp_path / "report.md").read_text()

    # the references (one per forward method) are converged; the first agrees with
    # central finite differences
    reference = payload["reference"]
    assert reference["residual"] < 1e-10
    assert set(payload["references"]) == {"Nesterov", "Newton"}
    assert all(r["residual"] < 1e-10 for r in payload["references"].values())
    assert "One reference per forward method" in (tmp_path / "report.md").read_text()
    assert len(payload["finite_differences"]) == 2
    for check in payload["finite_differences"]:
        assert check["relative_difference"] < 1e-5
        np.testing.assert_allclose(check["finite_difference"], check["implicit_lu"], rtol=1e-5)

    records = payload["records"]
    row = {(r["backend"], r["sweep"], r["T"], r["k"]): r for r in records}
    assert {r["backend"] for r in records} == set(strategies.BACKENDS)
    for r in records:
        assert np.isfinite(r["rel_err_ref"]) and -1 <= r["cos_ref"] <= 1 + 1e-12
        assert r["residual"] >= 0

    unrolled = row["unrolled", "T", 2, None]
    assert unrolled["rel_err_unrolled"] == 0
    np.testing.assert_allclose(unrolled["cos_unrolled"], 1, rtol=1e-12)
    # at its defaults Unrolled stops at gtol 1e-3: not reached in 2 steps, the same gradient
    default = row["unrolled", "default", 2, None]
    assert default["residual"] > 1e-3 and default["rel_err_ref"] == unrolled["rel_err_ref"]
    # Truncated(k=T) is Unrolled exactly; k < T is not
    full = row["truncated", "k", 2, 2]
    assert full["rel_err_unrolled"] < 1e-12
    np.testing.assert_allclose(full["rel_err_ref"], unrolled["rel_err_ref"], rtol=1e-10)
    assert row["truncated", "k", 2, 1]["rel_err_unrolled"] > 1e-6
    # Nesterov's lr and momentum: zero gradient under Implicit only; Newton has neither
    converged = [r for r in records if r["sweep"] == "converged"]
    assert len(converged) == 1 and converged[0]["method"] == "Nesterov"
    assert converged[0]["grad_lr"] == 0 and converged[0]["grad_momentum"] == 0
    assert unrolled["grad_lr"] != 0
    assert row["implicit", "T", 2, None]["grad_lr"] is None
    # converged Implicit matches the reference (the target)
    assert converged[0]["rel_err_ref"] <= 1e-6
    assert all(t["met"] for t in payload["targets"])

"""The backend suites measuring a transport layer (`--layer otke`, `--layer rotp`): the same
reports as for EA, with Sinkhorn forwards."""

import json

import numpy as np
import pytest

from benchmarks.backends import accuracy, memory


@pytest.mark.slow
def test_accuracy_of_transport_layer(tmp_path, layer="otke"):
    args = ["--quick", "--quiet", "--layer", layer, "--inner-steps", "1", "3"]
    accuracy.main(
        [*args, "--k-sweep-steps", "3", "--truncate-ks", "1", "3", "--out", str(tmp_path)]
    )
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["config"]["layer"] == layer
    reference = payload["reference"]
    assert reference["residual"] < 1e-10 and reference["lr"] is None
    for check in payload["finite_differences"]:
        np.testing.assert_allclose(check["finite_difference"], check["implicit_lu"], rtol=1e-5)
    row = {(r["backend"], r["sweep"], r["T"], r["k"]): r for r in payload["records"]}
    unrolled = row["unrolled", "T", 3, None]
    assert unrolled["grad_lr"] is None  # Sinkhorn has no learned step parameters
    # more Sinkhorn steps, a gradient closer to the true plan's
    assert unrolled["rel_err_ref"] < row["unrolled", "T", 1, None]["rel_err_ref"]
    assert row["truncated", "k", 3, 3]["rel_err_unrolled"] < 1e-12
    assert row["truncated", "k", 3, 1]["rel_err_unrolled"] > 1e-6
    converged = [r for r in payload["records"] if r["sweep"] == "converged"]
    assert converged[0]["rel_err_ref"] <= 1e-6
    assert all(t["met"] for t in payload["targets"])


@pytest.mark.slow
def test_memory_of_transport_layer(tmp_path):
    memory.main(["--quick", "--quiet", "--layer", "otke", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    total = {(r["backend"], r["T"]): r["total_MB"] for r in payload["records"]}
    assert total["unrolled", 4] > total["unrolled", 1]
    assert total["implicit", 4] < total["unrolled", 4]
    # Sinkhorn's Implicit keeps no tape: its memory does not grow with T
    assert total["implicit", 4] < 1.05 * total["implicit", 1]
    assert total["unrolled", 4] - total["unrolled", 1] > 10 * (
        total["implicit", 4] - total["implicit", 1]
    )

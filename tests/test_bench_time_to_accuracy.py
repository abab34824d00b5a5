"""`python -m benchmarks time-to-accuracy --quick`: every backend trained on the same batches,
each seed's held-out curve against training time, and the time-to-target table."""

import json

import numpy as np
import pytest

from benchmarks.backends import time_to_accuracy


@pytest.mark.slow
def test_quick_run_compares_backends_against_unrolled(tmp_path):
    argv = ["--quick", "--quiet", "--variants", "implicit", "truncated", "--out", str(tmp_path)]
    time_to_accuracy.main(argv)
    payload = json.loads((tmp_path / "results.json").read_text())
    rows = payload["records"]
    assert [r["variant"] for r in rows] == ["unrolled", "implicit", "truncated", "unrolled T=2→5"]
    reference = rows[0]
    # the target is Unrolled's mean final MSE + its seed std: every Unrolled seed is within it
    assert reference["reached"] == "2/2" and reference["vs_unrolled"] == 1.0
    assert reference["target"] >= reference["metric"] and reference["setting"] == "D=1"
    for row in rows:
        assert np.isfinite(row["metric"]) and row["steps_per_s"] > 0 and row["total_MB"] > 0
        assert row["residual"] >= 0
        reached, seeds = map(int, row["reached"].split("/"))
        # the median over seeds, a seed that never reaches the target being infinitely slow
        assert (row["time_to_target_s"] is None) == (reached < seeds // 2 + 1)
    for runs in payload["curves"].values():
        assert len(runs) == 2  # seeds
        for run in runs:
            assert [r["step"] for r in run] == [0, 5, 10, 15, 20]
            seconds = [r["train_seconds"] for r in run]
            assert seconds[0] == 0 and np.all(np.diff(seconds) > 0)
    # the seeds train differently
    first = payload["curves"]["1/unrolled"]
    assert first[0][-1]["mse"] != first[1][-1]["mse"] and payload["metric"] == "mse"
    [goal] = payload["targets"]
    assert goal["met"] or goal["why"]
    assert (tmp_path / "time_to_accuracy.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["counting", "molecules"])
def test_quick_run_on_a_task_where_higher_or_lower_is_better(task, tmp_path):
    """Counting's accuracy is higher-better, FreeSolv's RMSE lower-better: the target moves
    to the side of Unrolled's mean that its seeds reach."""
    argv = ["--quick", "--quiet", "--task", task, "--variants", "unrolled", "--train-inner-steps"]
    time_to_accuracy.main([*argv, "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    reference = payload["records"][0]
    assert reference["reached"] == "2/2" and reference["lower_is_better"] == (task != "counting")
    below = reference["target"] <= reference["metric"]
    assert below == (task == "counting") and reference["metric_std"] > 0
    assert [r["setting"] for r in payload["records"]] == [
        {"counting": "data=digits", "molecules": "conv=gin"}[task]
    ]


def test_an_unknown_variant_is_an_error_listing_the_known_ones(capsys):
    with pytest.raises(SystemExit):
        time_to_accuracy.main(["--quick", "--variants", "implicit-magic"])
    error = capsys.readouterr().err
    assert "implicit-magic" in error and all(name in error for name in time_to_accuracy.VARIANTS)

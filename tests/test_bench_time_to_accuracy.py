"""`python -m benchmarks time-to-accuracy --quick`: every backend trained on the same batches,
each seed's held-out curve against training time, and the time-to-target table."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.backends import time_to_accuracy
from benchmarks.backends.training_tasks import TASKS


@pytest.mark.slow
def test_quick_run_compares_backends_against_unrolled(tmp_path):
    argv = ["--quick", "--quiet", "--variants", "implicit", "truncated", "--out", str(tmp_path)]
    time_to_accuracy.main(argv)
    payload = json.loads((tmp_path / "results.json").read_text())
    rows = payload["records"]
    assert [r["variant"] for r in rows] == ["unrolled", "implicit", "truncated", "unrolled T=2→5"]
    reference = rows[0]
    # the target is the worse of Unrolled's two seeds' final MSEs: both reach it
    assert reference["reached"] == "2/2" and reference["vs_unrolled"] == 1.0
    assert reference["seeds_within_half"] in ("0/2", "1/2")  # not both in half its own time
    assert reference["target"] >= reference["metric"] and reference["setting"] == "D=1"
    for row in rows:
        assert np.isfinite(row["metric"]) and row["steps_per_s"] > 0 and row["total_MB"] > 0
        assert row["residual"] >= 0 and 0 <= row["converged"] <= 1
        assert 0 <= row["converged_in_training"] <= 1
        reached, seeds = map(int, row["reached"].split("/"))
        # the median over seeds, a seed that never reaches the target being infinitely slow
        assert (row["time_to_target_s"] is None) == (reached < seeds // 2 + 1)
    for runs in payload["curves"].values():
        assert len(runs) == 2  # seeds
        for run in runs:
            assert [r["step"] for r in run] == [0, 5, 10, 15, 20]
            seconds = [r["train_seconds"] for r in run]
            assert seconds[0] == 0 and np.all(np.diff(seconds) > 0)
    # Newton to its tolerance finds the argmin of every held-out set at every evaluation;
    # Unrolled's 5 steps do not meet the paper's gtol on all of them
    assert rows[1]["converged_in_training"] == 1.0 > reference["converged_in_training"]
    # the seeds train differently
    first = payload["curves"]["1/unrolled"]
    assert first[0][-1]["mse"] != first[1][-1]["mse"] and payload["metric"] == "mse"
    [goal] = payload["targets"]
    assert goal["met"] or goal["why"]
    assert (tmp_path / "time_to_accuracy.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["counting", "molecules"])
def test_quick_run_on_a_task_where_higher_or_lower_is_better(task, tmp_path):
    """Counting's accuracy is higher-better, FreeSolv's RMSE lower-better: the target is the
    worse of Unrolled's two seeds, on the side of their mean that both reach."""
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


@pytest.mark.parametrize(
    "finals, lower_is_better, expected",
    [([3.0, 1.0, 2.0, 5.0, 4.0], True, 3.0), ([3.0, 1.0, 2.0, 5.0, 4.0], False, 3.0),
     ([1.0, 2.0, 3.0, 4.0], True, 3.0), ([1.0, 2.0, 3.0, 4.0], False, 2.0), ([7.0], True, 7.0)],
)  # fmt: skip
def test_the_target_is_the_seed_median_within_its_bootstrap_interval(
    finals, lower_is_better, expected
):
    """The median of Unrolled's final metrics; for an even count the worse middle one."""
    assert time_to_accuracy.seed_median(finals, lower_is_better) == expected
    low, high = time_to_accuracy.bootstrap_interval(finals, lower_is_better)
    assert min(finals) <= low <= expected <= high <= max(finals)
    assert (low == high) == (len(finals) == 1)


def test_a_target_the_baseline_never_reaches_is_reported_as_such():
    rows = [
        {"setting": "D=1", "variant": "unrolled", "time_to_target_s": None,
         "seeds_within_half": None},
        {"setting": "D=1", "variant": "truncated", "time_to_target_s": 3.0,
         "seeds_within_half": None},
    ]  # fmt: skip
    [goal] = time_to_accuracy.targets_of(rows)
    assert not goal["met"] and "Unrolled itself did not reach" in goal["why"]


def test_the_goal_needs_four_in_five_seeds_within_half_unrolleds_time():
    reference = {"setting": "D=1", "variant": "unrolled", "time_to_target_s": 10.0,
                 "seeds_within_half": "0/5"}  # fmt: skip
    for count, met in (("3/5", False), ("4/5", True)):
        rows = [reference, {**reference, "variant": "truncated", "seeds_within_half": count}]
        [goal] = time_to_accuracy.targets_of(rows)
        assert goal["met"] == met and goal["measured"] == int(count[0]) / 5


def test_aux_variants_train_with_eq_5_at_weight_1():
    """`implicit-aux`'s loss adds eq. 5's auxiliary loss with weight 1, `implicit`'s with the
    median task's 1e-4, on the same model and batch."""
    args = time_to_accuracy._parser().parse_args(["--variants", "implicit", "implicit-aux"])
    vars(args).update(time_to_accuracy.QUICK, inner_steps=5)
    losses = {}
    for name in ("implicit", "implicit-aux"):
        [variant] = [v for v in time_to_accuracy.variants(args) if v["variant"] == name]
        run = TASKS["median"].build(args, 1, variant["backend"], 0, variant["aux_weight"])
        losses[name] = run.loss_fn(run.model, run.next_batch(0), jax.random.PRNGKey(0))
    (plain, metrics), (weighted, _) = losses["implicit"], losses["implicit-aux"]
    assert metrics["aux"] > 0
    np.testing.assert_allclose(weighted - plain, (1 - 1e-4) * metrics["aux"], rtol=1e-6)


def test_floor_variants_floor_every_potential_and_keep_its_parameters():
    """`checkpointed-floor` trains the median task's model with `R(y) = (c + softplus(λ))
    ||y||²`, `c` from `--min-regularisation`: the same strength at the start, never below
    `c` however training moves `λ`, the same network."""
    args = time_to_accuracy._parser().parse_args(
        ["--variants", "checkpointed-floor", "--min-regularisation", "0.03"]
    )
    vars(args).update(time_to_accuracy.QUICK, inner_steps=5)
    [variant] = [v for v in time_to_accuracy.variants(args) if v["variant"] == "checkpointed-floor"]
    run = TASKS["median"].build(args, 1, variant["backend"], 0)
    plain = run.model.pool.energy
    floored = variant["edit"](args, run).model.pool.energy
    assert (plain.min_regularisation, floored.min_regularisation) == (0.0, 0.03)
    y = jnp.array([2.0])
    np.testing.assert_allclose(floored.regulariser(y), plain.regulariser(y), rtol=1e-6)
    collapsed = eqx.tree_at(lambda e: e.raw_regularisation, floored, jnp.array(-60.0))
    np.testing.assert_allclose(collapsed.regulariser(y), 0.03 * 4.0, rtol=1e-6)
    assert eqx.tree_equal(plain.net, floored.net)


def test_contraction_variant_weighs_the_penalty_in_every_ea_layer_and_keeps_its_parameters():
    """`checkpointed-contraction` trains the median task's model with the contraction
    penalty at `--contraction-weight` in its EA layer's auxiliary loss: the same parameters,
    a training loss that grows with the weight."""
    args = time_to_accuracy._parser().parse_args(
        ["--variants", "checkpointed-contraction", "--contraction-weight", "50"]
    )
    vars(args).update(time_to_accuracy.QUICK, inner_steps=5)
    [variant] = [
        v for v in time_to_accuracy.variants(args) if v["variant"] == "checkpointed-contraction"
    ]
    run = TASKS["median"].build(args, 1, variant["backend"], 0)
    edited = variant["edit"](args, run).model
    assert (run.model.pool.contraction_weight, edited.pool.contraction_weight) == (0.0, 50.0)
    leaves = [jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array)) for m in (run.model, edited)]
    assert all(a is b for a, b in zip(*leaves, strict=True))
    batch, key = run.next_batch(0), jax.random.PRNGKey(0)
    (plain, _), (weighted, _) = run.loss_fn(run.model, batch, key), run.loss_fn(edited, batch, key)
    args.contraction_weight = 100.0
    (doubled, _) = run.loss_fn(variant["edit"](args, run).model, batch, key)
    assert weighted > plain
    np.testing.assert_allclose(doubled - plain, 2 * (weighted - plain), rtol=1e-6)


def test_contraction_subset_penalises_a_share_of_the_sets_with_the_same_expected_penalty():
    """`--contraction-subset 4`: the penalty on a quarter of each batch's sets at 4× the
    weight. The task loss is unchanged otherwise, and over the four rotations of a batch
    (each quarter penalised once) it averages to the loss with every set penalised."""

    def parsed(subset: str):
        args = time_to_accuracy._parser().parse_args(
            ["--variants", "checkpointed-contraction", "--contraction-weight", "50",
             "--contraction-subset", subset]
        )  # fmt: skip
        vars(args).update(time_to_accuracy.QUICK, inner_steps=5)
        return args

    args = parsed("4")
    [variant] = [
        v for v in time_to_accuracy.variants(args) if v["variant"] == "checkpointed-contraction"
    ]
    run = TASKS["median"].build(args, 1, variant["backend"], 0)
    every_set = variant["edit"](parsed("1"), run)
    subset = variant["edit"](args, run)
    assert subset.model.pool.contraction_weight == 50.0
    x, median = run.next_batch(0)
    assert len(x) == 8  # quarters of two sets
    key = jax.random.PRNGKey(0)

    @eqx.filter_jit
    def loss_and_grad(loss_fn, model, batch):
        return eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, batch, key)

    rotations = [(jnp.roll(x, 2 * i, 0), jnp.roll(median, 2 * i, 0)) for i in range(4)]
    parts = [loss_and_grad(subset.loss_fn, subset.model, batch) for batch in rotations]
    (full, full_metrics), full_grad = loss_and_grad(every_set.loss_fn, every_set.model, (x, median))
    losses = [loss for (loss, _), _ in parts]
    assert np.ptp(losses) > 1e-3 * full  # which quarter is penalised matters
    np.testing.assert_allclose(np.mean(losses), full, rtol=1e-5)
    for (_, metrics), _ in parts:  # the squared error is every set's, penalised or not
        np.testing.assert_allclose(metrics["mse"], full_metrics["mse"], rtol=1e-5)
    mean_grad = jax.tree_util.tree_map(lambda *g: sum(g) / 4, *[grad for _, grad in parts])
    for g, expected in zip(*map(jax.tree_util.tree_leaves, (mean_grad, full_grad)), strict=True):
        np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-6)


def test_contraction_subset_refuses_a_task_whose_batches_are_graphs(capsys):
    argv = ["--task", "molecules", "--variants", "checkpointed-contraction",
            "--contraction-subset", "2"]  # fmt: skip
    with pytest.raises(SystemExit):
        time_to_accuracy.main(argv)
    assert "--contraction-subset 2 splits each batch of sets" in capsys.readouterr().err


def test_short_variants_train_each_named_variant_with_fewer_steps_and_evaluate_with_T():
    """`--short-variants checkpointed-contraction --train-inner-steps 2`: the paper's E.2
    protocol applied to that variant, its penalty included; a variant without inner steps
    (solved to a tolerance) cannot be shortened."""
    args = time_to_accuracy._parser().parse_args(
        ["--variants", "unrolled", "--train-inner-steps", "2", "7",
         "--short-variants", "unrolled", "checkpointed-contraction"]
    )  # fmt: skip
    vars(args).update(inner_steps=5)
    rows = {v["variant"]: v for v in time_to_accuracy.variants(args)}
    assert list(rows) == ["unrolled", "unrolled T=2→5", "checkpointed-contraction T=2→5"]
    short = rows["checkpointed-contraction T=2→5"]
    assert type(short["backend"]).__name__ == "Checkpointed" and short["backend"].steps == 2
    assert short["T_eval"] == 5 and short["edit"] is time_to_accuracy._contracting
    assert not short["backend"].throw and rows["unrolled T=2→5"]["backend"].steps == 2


def test_a_variant_solved_to_tolerance_cannot_be_shortened(capsys):
    with pytest.raises(SystemExit):
        time_to_accuracy._parser().parse_args(["--short-variants", "implicit"])
    assert "--short-variants: invalid choice: 'implicit'" in capsys.readouterr().err

"""The median-estimation task: its data, its models, a quick training run, checkpoints."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks.shared import training
from benchmarks.shared.data.median import median_sets
from benchmarks.tasks import median


def test_generator_labels_are_medians(getkey):
    x, labels = median_sets(getkey(), 120)
    assert x.shape == (120, 100, 1) and labels.shape == (120,)
    np.testing.assert_allclose(labels, np.median(np.asarray(x[..., 0]), axis=1), rtol=1e-12)
    # The three distributions of D.1: uniform on [0, 1], gamma(0.5, scale 0.2) >= 0, and
    # normal(0.5, 0.4), whose sets are the only ones with values outside [0, 1] on both sides.
    values = np.asarray(x[..., 0])
    below, above = (values < 0).any(1), (values > 1).any(1)
    assert (below & above).any()  # normal
    assert (~below & above).any()  # gamma's long tail
    uniform_like = ~below & ~above & (values.max(1) > 0.9)
    assert uniform_like.any()
    np.testing.assert_allclose(values[below].mean(), 0.5, atol=0.05)  # normal sets' mean
    x_small, labels_small = median_sets(getkey(), 5, set_size=7)
    assert x_small.shape == (5, 7, 1)
    np.testing.assert_allclose(labels_small, np.median(np.asarray(x_small[..., 0]), 1))


@pytest.mark.parametrize("name", ["sum", "attention", "ea"])
def test_models_have_the_paper_shapes(name, getkey):
    model = median.build_model(
        name, 4, 8, training.backend_from_args(_backend_args()), key=getkey()
    )
    x, _ = median_sets(getkey(), 3, set_size=10)
    prediction, aux = jax.vmap(model)(x)
    assert prediction.shape == (3, 1) and aux.shape == (3,)
    assert (model.encoder is None) == (name == "ea")
    if name == "ea":
        assert model.pool.energy.net.layers[0].in_features == 4 + 1  # D + 1 inputs
        assert model.pool.solver.steps == 5 and np.all(aux > 0)
    else:
        assert model.encoder.layers[-1].out_features == 4
    assert model.decoder.layers[0].out_features == 128


def _backend_args():
    import argparse

    parser = argparse.ArgumentParser()
    training.add_backend_flags(parser, inner_steps=5)
    return parser.parse_args([])


@pytest.mark.slow
def test_quick_suite_trains_and_writes_results(tmp_path):
    median.main(["--quick", "--models", "sum", "ea", "--steps", "20", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    records = {r["model"]: r for r in payload["records"]}
    assert set(records) == {"sum", "ea"} and all(r["D"] == 2 for r in records.values())
    assert (tmp_path / "median_mse_vs_dim.png").stat().st_size > 0
    for name in ("sum", "ea"):
        lines = (tmp_path / "logs" / f"{name}-D2.jsonl").read_text().splitlines()
        evals = [json.loads(line)["mse"] for line in lines if '"eval"' in line]
        assert evals[-1] == pytest.approx(records[name]["mse"])
        assert evals[-1] < evals[0]  # held-out MSE fell from the initial model's


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path, getkey):
    backend = training.backend_from_args(_backend_args())
    model = median.build_model("attention", 2, 8, backend, key=getkey())
    data_key = getkey()
    config = training.TrainConfig(steps=3, quiet=True, checkpoint_dir=tmp_path)

    def next_batch(step):
        return median_sets(jax.random.fold_in(data_key, step), 4, 10)

    trained, _ = training.train(model, median.make_loss(1e-4), next_batch, config)
    template = (model, optax.adam(config.lr).init(eqx.filter(model, eqx.is_inexact_array)))
    (loaded, _), step, _ = training.load_checkpoint(tmp_path, template)
    x, _ = next_batch(100)
    assert step == 3
    np.testing.assert_array_equal(jax.vmap(loaded)(x)[0], jax.vmap(trained)(x)[0])
    assert not np.allclose(jax.vmap(model)(x)[0], jax.vmap(trained)(x)[0])
    assert jnp.all(jnp.isfinite(jax.vmap(loaded)(x)[0]))

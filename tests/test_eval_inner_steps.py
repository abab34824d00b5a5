"""Fewer inner steps in training than at test (paper E.2): `eqx_agg.with_inner_steps` and the
tasks' `--eval-inner-steps`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_agg
import solvers
from benchmarks.shared import training

from .helpers import random_set


def mean_layer(solver):
    return eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean(), solver)


def test_more_steps_at_test_reach_the_pooling_the_training_steps_miss():
    x = random_set(0, 37, 3, scale=5.0)
    trained = mean_layer(solvers.Unrolled(2, lr=0.05, momentum=0.5, gtol=0))
    far = float(jnp.max(jnp.abs(trained(x) - jnp.mean(x, axis=0))))
    assert far > 0.1
    evaluated = eqx_agg.with_inner_steps(trained, 200)
    np.testing.assert_allclose(evaluated(x), jnp.mean(x, axis=0), atol=1e-8)
    assert evaluated.solver.steps == 200 and trained.solver.steps == 2  # the model is kept
    assert evaluated.solver.method.raw_lr == trained.solver.method.raw_lr


def test_every_backend_keeps_its_settings():
    model = (
        mean_layer(solvers.Truncated(10, k=4, lr=0.2)),
        {"b": mean_layer(solvers.Implicit(50, linear_solver="gmres", tol=1e-6, throw=False))},
    )
    truncated, implicit = eqx_agg.with_inner_steps(model, 3)
    implicit = implicit["b"].solver
    assert (truncated.solver.steps, truncated.solver.k) == (3, 3)  # k capped at steps
    assert float(truncated.solver.method.lr) == pytest.approx(0.2)
    assert implicit.steps == 3
    assert (implicit.linear_solver, implicit.tol, implicit.throw) == ("gmres", 1e-6, False)


@pytest.mark.parametrize("steps, error", [(2.5, TypeError), (0, ValueError)])
def test_bad_steps_raise(steps, error):
    with pytest.raises(error, match="steps"):
        eqx_agg.with_inner_steps(mean_layer(solvers.Unrolled(5)), steps)


def test_training_evaluates_with_eval_inner_steps():
    layer = mean_layer(solvers.Unrolled(2, lr=0.05, momentum=0.5, gtol=0))
    model = eqx.nn.Linear(3, 3, key=jax.random.PRNGKey(0)), layer
    x = random_set(1, 20, 3, scale=5.0)

    def loss_fn(model, batch, key):
        linear, layer = model
        loss = jnp.sum(layer(jax.vmap(linear)(batch)) ** 2)
        return loss, {}

    seen = []

    def evaluate(model, step):
        linear, layer = model
        h = jax.vmap(linear)(x)
        seen.append(layer.solver.steps)
        return {"error": float(jnp.max(jnp.abs(layer(h) - jnp.mean(h, axis=0))))}

    config = training.TrainConfig(
        steps=2, eval_every=1, log_every=1, quiet=True, eval_inner_steps=200
    )
    trained, history = training.train(model, loss_fn, lambda step: x, config, evaluate)
    assert seen == [200, 200, 200]
    assert all(record["error"] < 1e-8 for record in history["eval"])
    assert trained[1].solver.steps == 2

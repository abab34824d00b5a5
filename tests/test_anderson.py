"""Anderson acceleration: faster than the plain iteration it accelerates, for energies and for
Sinkhorn, with the same answer, and loud on bad input (every backend: the strategy matrix)."""

import jax
import numpy as np
import pytest

import eqx_agg
import solvers

from .helpers import neural_layer, random_set


def test_mixing_needs_fewer_steps_than_the_plain_gradient_iteration():
    x = random_set(0, 12, 3)
    sols = {
        history: neural_layer(
            solvers.Implicit(2000, method=solvers.Anderson(history=history, lr=0.5))
        ).solve(x)
        for history in [1, 5]
    }
    assert sols[5].stats.converged and sols[1].stats.converged
    assert sols[5].stats.num_steps < 0.5 * sols[1].stats.num_steps
    np.testing.assert_allclose(sols[5].value, sols[1].value, rtol=1e-6, atol=1e-8)


def test_accelerated_sinkhorn_needs_fewer_steps_for_the_same_plan():
    """A small entropic regularisation, where Sinkhorn is slow."""
    x = random_set(1, 20, 3)
    layers = {
        name: eqx_agg.OTKE(
            3, 4, eps=0.05, solver=solvers.Implicit(3000, method=method), key=jax.random.key(0)
        )  # fmt: skip
        for name, method in [
            ("sinkhorn", solvers.Sinkhorn()),
            ("anderson", solvers.Anderson(sinkhorn=solvers.Sinkhorn())),
        ]
    }
    sols = {name: layer.solve(x) for name, layer in layers.items()}
    assert all(sol.stats.converged for sol in sols.values())
    assert sols["anderson"].stats.num_steps < 0.5 * sols["sinkhorn"].stats.num_steps
    np.testing.assert_allclose(sols["anderson"].value, sols["sinkhorn"].value, atol=1e-7)


def test_accelerated_sinkhorn_is_refused_for_an_energy():
    with pytest.raises(ValueError, match="transport"):
        neural_layer(solvers.Implicit(method=solvers.Anderson(sinkhorn=solvers.Sinkhorn())))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"history": 0}, "history"),
        ({"ridge": -1e-3}, "ridge"),
        ({"lr": 0.0}, "lr"),
        ({"tol": -1.0}, "tol"),
    ],
)
def test_bad_options_name_the_value(options, match):
    with pytest.raises(ValueError, match=match):
        solvers.Anderson(**options)

"""The Nesterov inner optimizer and the backends on plain quadratics (no layer)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import solvers

from .helpers import BACKENDS, make_backend


def _quadratic(y, args):
    """Per-row `L/2 ||y - c||²`."""
    curvature, centre = args
    return 0.5 * curvature * jnp.sum((y - centre) ** 2, axis=-1)


def test_learnable_parameters_round_trip():
    opt = solvers.Nesterov(lr=0.3, momentum=0.7)
    np.testing.assert_allclose(opt.lr, 0.3, rtol=1e-12)
    np.testing.assert_allclose(opt.momentum, 0.7, rtol=1e-12)
    np.testing.assert_allclose(jax.nn.softplus(solvers.inverse_softplus(2.5)), 2.5, rtol=1e-12)


def test_steps_follow_listing_2():
    """y ← y + v, v ← μv − lr ∇E(y + μv), from y0 = 0 and v0 = 0."""
    centre = jnp.array([[1.0, -2.0]])
    backend = solvers.Unrolled(steps=4, lr=0.2, momentum=0.5, gtol=0.0)
    sol = backend.solve(_quadratic, jnp.zeros((1, 2)), (3.0, centre))
    y, v = np.zeros(2), np.zeros(2)
    for _ in range(4):
        g = 3.0 * (y + 0.5 * v - np.asarray(centre[0]))
        v = 0.5 * v - 0.2 * g
        y = y + v
    np.testing.assert_allclose(sol.value[0], y, rtol=1e-12)
    assert sol.stats.num_steps[0] == 4


@pytest.mark.parametrize("momentum", [0.5, 0.9])
def test_stability_bound_of_max_stable_lr(momentum):
    """Just under the bound the iteration contracts; just over it, it diverges."""
    curvature = 4.0
    lr = solvers.max_stable_lr(curvature, momentum)
    args = (curvature, jnp.ones((1, 1)))
    final = {}
    for factor in [0.97, 1.03]:
        backend = solvers.Unrolled(
            steps=2000, lr=factor * lr, momentum=momentum, gtol=0.0, throw=False
        )
        final[factor] = backend.solve(_quadratic, jnp.zeros((1, 1)), args).stats
    assert final[0.97].grad_max_norm[0] < 1e-6 and not final[0.97].diverged[0]
    assert final[1.03].diverged[0]


def test_gtol_freezes_converged_rows_only():
    centre = jnp.array([[0.0], [3.0]])
    backend = solvers.Unrolled(steps=50, gtol=1e-2)
    sol = backend.solve(_quadratic, jnp.zeros((2, 1)), (1.0, centre))
    assert sol.stats.num_steps[0] == 0
    assert 0 < sol.stats.num_steps[1] <= 50
    np.testing.assert_array_equal(sol.value[0], 0.0)


def test_clip_bounds_every_coordinate():
    centre = jnp.array([[5.0, -5.0, 0.5]])
    sol = solvers.Unrolled(steps=100, clip=1.0).solve(_quadratic, jnp.zeros((1, 3)), (1.0, centre))
    np.testing.assert_allclose(sol.value[0], [1.0, -1.0, 0.5], atol=1e-2)
    assert jnp.all(jnp.abs(sol.value) <= 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_are_consistent(backend):
    centre = jnp.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 0.0]])
    solver = make_backend(backend, steps=40, lr=0.3, gtol=1e-4)
    sol = solver.solve(_quadratic, jnp.zeros((3, 2)), (1.0, centre))
    residual = jnp.max(jnp.abs(sol.value - centre), axis=-1)
    np.testing.assert_allclose(sol.stats.grad_max_norm, residual, rtol=1e-10)
    np.testing.assert_allclose(sol.stats.energy, _quadratic(sol.value, (1.0, centre)), rtol=1e-10)
    assert sol.stats.grad_max_norm_history.shape == (3, 40)
    np.testing.assert_allclose(
        sol.stats.grad_max_norm_history[:, 0], jnp.max(jnp.abs(centre), axis=-1)
    )
    np.testing.assert_array_equal(sol.stats.converged, sol.stats.grad_max_norm < 1e-4)
    assert not sol.stats.diverged.any()

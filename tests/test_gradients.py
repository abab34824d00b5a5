"""Gradients of each backend: finite differences, agreement in the converged limit, k = T."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import eqx_agg
import solvers

from .helpers import BACKENDS, make_backend, random_set, tree_allclose


def _neural_layer(solver):
    energy = eqx_agg.energies.Neural(3, 2, widths=(16, 8), key=jax.random.PRNGKey(0))
    return eqx_agg.EquilibriumAggregation(energy, solver)


def _loss(layer, x):
    sol = layer.solve(x)
    return jnp.sum(jnp.sin(sol.value))


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_grads_against_finite_differences(backend):
    """Converged float64 solves: every backend's gradient matches central differences of
    the procedure, w.r.t. the inputs and the potential's parameters. (Truncated's error
    shrinks geometrically in k: k = 100 of 400 steps leaves about 1e-5.)"""
    solver = make_backend(backend, steps=400, gtol=0.0)
    if backend == "truncated":
        solver = solvers.Truncated(steps=400, k=300, gtol=0.0)
    layer = _neural_layer(solver)
    x = random_set(0, 6, 3)
    params, static = eqx.partition(layer.energy, eqx.is_inexact_array)

    def f(x, params):
        energy = eqx.combine(params, static)
        return _loss(eqx.tree_at(lambda m: m.energy, layer, energy), x)

    check_grads(f, (x, params), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


def test_unrolled_check_grads_far_from_convergence():
    """Unrolled differentiates the T-step procedure exactly, converged or not."""
    layer = _neural_layer(solvers.Unrolled(steps=3, gtol=0.0))
    x = random_set(1, 5, 3)
    check_grads(lambda x: _loss(layer, x), (x,), order=1, modes=["rev"], eps=1e-6)


def test_implicit_equals_unrolled_when_converged():
    x = random_set(2, 7, 3)
    grads = {}
    for name in ["unrolled", "implicit"]:
        layer = _neural_layer(make_backend(name, steps=500, gtol=0.0))
        grads[name] = eqx.filter_grad(lambda m: _loss(m, x))(layer)
    assert tree_allclose(grads["unrolled"].energy, grads["implicit"].energy, rtol=1e-7, atol=1e-9)


def test_implicit_and_unrolled_differ_far_from_convergence():
    """Implicit's gradient is of a fixed point: after 3 steps it is not Unrolled's."""
    x = random_set(2, 7, 3)
    g = {}
    for name in ["unrolled", "implicit"]:
        layer = _neural_layer(make_backend(name, steps=3, gtol=0.0))
        g[name] = jax.grad(_loss, argnums=1)(layer, x)
    assert not np.allclose(g["unrolled"], g["implicit"], rtol=1e-3)


@pytest.mark.parametrize("linear_solver", ["cg", "normal_cg", "gmres", "lu"])
def test_implicit_mean_gradient_is_one_over_n(linear_solver):
    n = 9
    x = random_set(3, n, 2)
    layer = eqx_agg.EquilibriumAggregation(
        eqx_agg.energies.Mean(), solvers.Implicit(steps=400, gtol=0.0, linear_solver=linear_solver)
    )
    jac = jax.jacrev(layer)(x)  # [m, n, d]
    expected = np.einsum("md,n->mnd", np.eye(2), np.full(n, 1 / n))
    np.testing.assert_allclose(jac, expected, atol=1e-9)


def test_implicit_ridge_biases_the_gradient():
    x = random_set(3, 9, 2)
    grads = []
    for ridge in [None, 1.0]:
        solver = solvers.Implicit(steps=400, gtol=0.0, ridge=ridge)
        layer = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean(), solver)
        grads.append(jax.grad(lambda x, layer: jnp.sum(layer(x)))(x, layer))
    np.testing.assert_allclose(grads[0], 1 / 9, atol=1e-9)
    assert np.all(np.asarray(grads[1]) < 1 / 9)


def test_truncated_with_k_equal_steps_is_unrolled_exactly():
    x = random_set(4, 6, 3)
    steps = 7
    unrolled = _neural_layer(solvers.Unrolled(steps=steps))
    truncated = _neural_layer(solvers.Truncated(steps=steps, k=steps))
    assert np.array_equal(unrolled(x), truncated(x))
    g_u = eqx.filter_grad(lambda m: _loss(m, x))(unrolled)
    g_t = eqx.filter_grad(lambda m: _loss(m, x))(truncated)
    parts = lambda g: (g.energy, g.solver.optimizer)  # noqa: E731
    assert tree_allclose(parts(g_u), parts(g_t), rtol=0, atol=0)


def test_truncated_gradient_is_unrolled_from_the_stopped_state():
    """Truncated(T, k) == k unrolled steps from the (stop-gradient) state after T - k steps,
    so with k < T it differs from Unrolled(T) away from convergence."""
    x = random_set(5, 6, 3)
    g = {}
    for k in [2, 6]:
        layer = _neural_layer(solvers.Truncated(steps=6, k=k, gtol=0.0))
        g[k] = jax.grad(_loss, argnums=1)(layer, x)
    assert not np.allclose(g[2], g[6], rtol=1e-3)


def test_only_implicit_gives_optimizer_parameters_zero_gradient():
    x = random_set(6, 6, 3)
    for name in BACKENDS:
        layer = _neural_layer(make_backend(name, steps=8, gtol=0.0))
        grads = eqx.filter_grad(lambda m: _loss(m, x))(layer).solver.optimizer
        if name == "implicit":
            assert grads.raw_lr == 0 and grads.raw_momentum == 0
        else:
            assert grads.raw_lr != 0 and grads.raw_momentum != 0


def test_aux_loss_is_eq_5_and_differentiable_under_unrolled():
    x = random_set(7, 6, 3)
    layer = _neural_layer(solvers.Unrolled(steps=5, gtol=0.0))
    sol = layer.solve(x)
    # eq. 5 at the look-ahead points: recompute them by hand.
    energy, opt = layer.energy, layer.solver.optimizer
    grad_e = jax.grad(lambda y: energy(x, y))
    y, v, terms = jnp.zeros(2), jnp.zeros(2), []
    for _ in range(5):
        g = grad_e(y + opt.momentum * v)
        terms.append(jnp.sum(g**2))
        v = opt.momentum * v - opt.lr * g
        y = y + v
    np.testing.assert_allclose(sol.value, y, rtol=1e-10)
    np.testing.assert_allclose(sol.stats.aux_loss, np.mean(terms), rtol=1e-10)
    g = eqx.filter_grad(lambda m: m.solve(x).stats.aux_loss)(layer)
    assert jnp.any(g.energy.net.layers[0].weight != 0)

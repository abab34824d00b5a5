"""Gradients of each backend: finite differences, agreement at convergence (a property over
drawn values), Truncated against Unrolled, and the auxiliary loss."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from jax.test_util import check_grads

import eqx_agg
import solvers
from eqx_agg import testing

from .helpers import BACKENDS, make_backend, neural_layer, random_set, relative_error, tree_allclose

CONVERGED = neural_layer(solvers.Implicit())
"""The learned potential whose backends `test_implicit_equals_unrolled_at_convergence`
compares (each replaces its solver)."""


def _loss(layer, x, mask=None):
    return jnp.sum(jnp.sin(layer.solve(x, mask).value))


@pytest.mark.parametrize(
    "solver",
    [
        solvers.Unrolled(steps=400, lr=0.5, gtol=0.0),
        solvers.Implicit(method=solvers.Newton(gtol=1e-12), linear_solver="lu"),
    ],
    ids=["unrolled", "implicit-lu"],
)
def test_check_grads_against_finite_differences(solver):
    """Converged float64 solves: the exact procedure (Unrolled) and the strategy matrix's
    reference (Implicit, dense LU) match central differences of the computed function,
    w.r.t. the inputs and the potential's parameters."""
    layer = neural_layer(solver)
    x = random_set(0, 6, 3)
    params, static = eqx.partition(layer.energy, eqx.is_inexact_array)

    def f(x, params):
        energy = eqx.combine(params, static)
        return _loss(eqx.tree_at(lambda m: m.energy, layer, energy), x)

    check_grads(f, (x, params), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


def test_unrolled_check_grads_far_from_convergence():
    """Unrolled differentiates the T-step procedure exactly, converged or not."""
    layer = neural_layer(solvers.Unrolled(steps=3, gtol=0.0))
    check_grads(lambda x: _loss(layer, x), (random_set(1, 5, 3),), order=1, modes=["rev"], eps=1e-6)


@given(drawn=testing.sets(3, max_size=12, scales=(0.1, 1.0, 3.0), dtypes=(np.float64,)))
def test_implicit_equals_unrolled_at_convergence(drawn):
    """A property over drawn sets (ties, duplicates, scales, offsets): at convergence the
    implicit gradient is the limit of the unrolled one, for the inputs and the parameters
    (to 1e-6 relative). One method for both, so both reach the same one of the energy's
    minima."""
    backends = [
        solvers.Unrolled(steps=1500, lr=0.5, gtol=0.0),
        solvers.Implicit(steps=1500, method=solvers.Nesterov(lr=0.5, gtol=1e-10)),
    ]
    testing.check_backends_agree(CONVERGED, *drawn, backends=backends, rtol=1e-6)


def test_implicit_and_unrolled_differ_far_from_convergence():
    """Unrolled after 3 steps is the gradient of a 3-step procedure, not of the argmin."""
    x = random_set(2, 7, 3)
    g = {
        name: jax.grad(_loss, argnums=1)(neural_layer(solver), x)
        for name, solver in [
            ("unrolled", solvers.Unrolled(steps=3, gtol=0.0)),
            ("implicit", solvers.Implicit(steps=2000, lr=0.5)),
        ]  # fmt: skip
    }
    assert relative_error(g["unrolled"], g["implicit"]) > 1e-2


@pytest.mark.parametrize("linear_solver", ["cg", "normal_cg", "gmres", "lu"])
def test_implicit_mean_gradient_is_one_over_n(linear_solver):
    n = 9
    solver = solvers.Implicit(steps=400, lr=0.05, linear_solver=linear_solver)
    layer = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean(), solver)
    jac = jax.jacrev(layer)(random_set(3, n, 2))  # [m, n, d]
    np.testing.assert_allclose(jac, np.einsum("md,n->mnd", np.eye(2), np.full(n, 1 / n)),
                               atol=1e-9)  # fmt: skip


def test_implicit_ridge_biases_the_gradient():
    x = random_set(3, 9, 2)
    grads = []
    for ridge in [None, 1.0]:
        solver = solvers.Implicit(steps=400, lr=0.05, ridge=ridge)
        layer = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean(), solver)
        grads.append(jax.grad(lambda x, layer=layer: jnp.sum(layer(x)))(x))
    np.testing.assert_allclose(grads[0], 1 / 9, atol=1e-9)
    assert np.all(np.asarray(grads[1]) < 1 / 9)


def test_truncated_with_k_equal_steps_is_unrolled_exactly():
    x = random_set(4, 6, 3)
    unrolled = neural_layer(solvers.Unrolled(steps=7))
    truncated = neural_layer(solvers.Truncated(steps=7, k=7))
    assert np.array_equal(unrolled(x), truncated(x))
    g_u = eqx.filter_grad(lambda m: _loss(m, x))(unrolled)
    g_t = eqx.filter_grad(lambda m: _loss(m, x))(truncated)
    parts = lambda g: (g.energy, g.solver.optimizer)  # noqa: E731
    assert tree_allclose(parts(g_u), parts(g_t), rtol=0, atol=0)


def test_truncated_gradient_is_k_unrolled_steps_from_the_stopped_state():
    """Truncated(T, k) = k taped steps from the (stop-gradient) state after T - k steps, so
    with k < T it differs from Unrolled(T) away from convergence."""
    x = random_set(5, 6, 3)
    g = {k: jax.grad(_loss, argnums=1)(neural_layer(solvers.Truncated(6, k, gtol=0.0)), x)
         for k in [2, 6]}  # fmt: skip
    assert relative_error(g[2], g[6]) > 1e-3


def test_truncated_gives_a_gradient_to_sets_converged_in_its_prefix():
    """A set that meets the tolerance in the untaped prefix still takes the k taped steps,
    so it gets the k-term Neumann approximation of the implicit gradient, not zero."""
    x = random_set(6, 8, 3)
    truncated = jax.grad(_loss, argnums=1)(neural_layer(solvers.Truncated(600, 200, lr=0.5)), x)
    implicit = jax.grad(_loss, argnums=1)(neural_layer(solvers.Implicit(2000, lr=0.5)), x)
    assert neural_layer(solvers.Truncated(600, 200, lr=0.5)).solve(x).stats.converged
    assert relative_error(truncated, implicit) < 1e-3


@pytest.mark.parametrize("name", BACKENDS)
def test_only_implicit_gives_optimizer_parameters_zero_gradient(name):
    """Implicit differentiates the fixed point, which lr and momentum do not move; every
    other backend differentiates steps that use them (Phantom: its taped steps)."""
    x = random_set(6, 6, 3)
    to_tolerance = make_backend(name, 8).runs_to_tolerance
    steps, gtol = (2000, 1e-10) if to_tolerance else (8, 0.0)
    layer = neural_layer(make_backend(name, steps, k=3, lr=0.5, gtol=gtol))
    grads = eqx.filter_grad(lambda m: _loss(m, x))(layer).solver.optimizer
    assert (grads.raw_lr == 0 and grads.raw_momentum == 0) == (name == "implicit")


def test_aux_loss_is_eq_5_and_differentiable_under_unrolled():
    x = random_set(7, 6, 3)
    layer = neural_layer(solvers.Unrolled(steps=5, gtol=0.0))
    sol = layer.solve(x)
    energy, opt = layer.energy, layer.solver.optimizer
    grad_e = jax.grad(lambda y: energy(x, y))
    y, v, terms = jnp.zeros(3), jnp.zeros(3), []
    for _ in range(5):  # eq. 5 at the look-ahead points, by hand
        g = grad_e(y + opt.momentum * v)
        terms.append(jnp.sum(g**2))
        v = opt.momentum * v - opt.lr * g
        y = y + v
    np.testing.assert_allclose(sol.value, y, rtol=1e-10)
    np.testing.assert_allclose(sol.stats.aux_loss, np.mean(terms), rtol=1e-10)
    g = eqx.filter_grad(lambda m: m.solve(x).stats.aux_loss)(layer)
    assert jnp.any(g.energy.net.layers[0].weight != 0)

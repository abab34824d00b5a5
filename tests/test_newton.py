"""The Newton forward method for learned energies: a few steps to a tight tolerance where
Nesterov needs hundreds, never uphill, the same answer with a formed Hessian or CG, and loud
on bad input (every backend: the strategy matrix)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_agg
import solvers

from .helpers import random_set


def _random_layers(solver, seeds=range(10)):
    """The issue's problems: untrained `Neural(3, 4)` potentials, sets of 37 standard-normal
    elements."""
    for seed in seeds:
        energy = eqx_agg.energies.Neural(3, 4, (16, 8), key=jax.random.key(seed))
        yield eqx_agg.EquilibriumAggregation(energy, solver), random_set(seed, 37, 3)


def test_the_default_implicit_forward_converges_on_ten_random_potentials_in_few_steps():
    """Default `Implicit()` runs Newton: every set reaches 1e-8 within 15 steps (Nesterov
    with restart needed 103–621, and the default cap of 300 failed one of ten)."""
    for layer, x in _random_layers(solvers.Implicit()):
        assert type(layer.solver.method) is solvers.Newton
        sol = layer.solve(x)
        assert sol.stats.converged and sol.stats.grad_max_norm < 1e-8
        assert sol.stats.num_steps <= 15


def double_well(y, args):
    """`E = Σ_d (y_d² - 1)² + c·y_d`: `y = 0` is a local maximum, the minima near ±1."""
    (c,) = args
    return jnp.sum((y**2 - 1) ** 2 + c * y, axis=-1)


def test_never_uphill_and_a_minimum_where_the_energy_is_not_convex():
    """From the local maximum's neighbourhood plain Newton steps climb to it; the damped
    steps descend monotonically to a minimum (positive curvature there)."""
    c = jnp.array([0.3, -0.2, 0.05])
    y0 = jnp.full((1, 3), 0.01)
    sol = solvers.Implicit(100, method=solvers.Newton()).solve(double_well, y0, (c,))
    energies = np.asarray(sol.stats.energy_history[0, : int(sol.stats.num_steps[0]) + 1])
    assert np.all(np.diff(energies) <= 1e-12)
    assert sol.stats.converged[0]
    curvature = 12 * np.asarray(sol.value) ** 2 - 4
    assert np.all(curvature > 0)


def test_conjugate_gradient_steps_reach_the_dense_answer():
    """`dense_size=0` forces per-set CG on Hessian-vector products: the same argmin."""
    dense, cg = solvers.Newton(), solvers.Newton(dense_size=0, cg_steps=10)
    for layer, x in _random_layers(solvers.Implicit(60, method=dense), seeds=range(3)):
        value = layer(x)
        other = eqx.tree_at(lambda m: m.solver, layer, solvers.Implicit(60, method=cg))
        sol = other.solve(x)
        assert sol.stats.converged
        np.testing.assert_allclose(sol.value, value, rtol=1e-7, atol=1e-9)


def test_a_non_finite_energy_stops_the_set_as_diverged():
    def broken(y, args):
        return jnp.sum(y**2, axis=-1) + jnp.where(args, jnp.nan, 0.0)

    solver = solvers.Unrolled(5, method=solvers.Newton(), throw=False)
    sol = solver.solve(broken, jnp.ones((2, 2)), jnp.array([False, True]))
    np.testing.assert_array_equal(sol.stats.diverged, [False, True])
    with pytest.raises(eqx.EquinoxRuntimeError, match="diverged"):
        solvers.Unrolled(5, method=solvers.Newton()).solve(
            broken, jnp.ones((2, 2)), jnp.array([False, True])
        )


@pytest.mark.parametrize(
    "options, match",
    [({"gtol": -1.0}, "gtol"), ({"dense_size": -1}, "dense_size"), ({"cg_steps": 0}, "cg_steps")],
)
def test_bad_options_name_the_value(options, match):
    with pytest.raises(ValueError, match=match):
        solvers.Newton(**options)

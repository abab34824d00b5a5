"""The CoordinateNewton forward method: exact on quadratics, safeguarded on smoothed absolute
values, refused for energies that are not separable (every backend: the strategy matrix)."""

import jax.numpy as jnp
import numpy as np
import pytest

import eqx_agg
import solvers

from .helpers import neural_layer


def quadratic(y, args):
    curvature, centre = args
    return 0.5 * jnp.sum(curvature * (y - centre) ** 2, axis=-1)


def test_a_quadratic_is_solved_by_the_first_step():
    curvature = jnp.array([[1e-3, 5.0, 1e3]])
    centre = jnp.array([[4.0, -2.0, 1e-3]])
    backend = solvers.Unrolled(steps=5, method=solvers.CoordinateNewton())
    sol = backend.solve(quadratic, jnp.zeros((1, 3)), (curvature, centre))
    np.testing.assert_allclose(sol.value, centre, rtol=1e-14)
    assert sol.stats.num_steps[0] <= 2 and sol.stats.converged[0]


def test_newton_overshoot_bisects_instead_of_ping_ponging():
    """A float32 median whose Newton steps jumped from one end of the bracket to the other
    forever (the steps hit the cap); the step must now at least halve, or bisect."""
    x = jnp.array(
        [-0.64670926, -0.5615577, -0.09591333, 0.2788348, 0.32372183, 0.68385416, 0.8972748],
        jnp.float32,
    )[:, None]
    sol = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Median()).solve(x)
    assert sol.stats.converged and sol.stats.num_steps < 40
    assert abs(float(sol.value[0]) - 0.2788348) < 0.01 * float(jnp.ptp(x))


def test_a_root_on_the_bracket_edge_is_reached():
    """Max of one element: the argmin is the bracket's lower end exactly."""
    for value in [0.0, 3.5, -1e3]:
        sol = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Max()).solve(jnp.full((1, 2), value))
        assert sol.stats.converged
        np.testing.assert_allclose(sol.value, value, atol=1e-12 * (1 + abs(value)))


def test_newton_is_refused_for_an_energy_that_is_not_separable():
    solver = solvers.Implicit(method=solvers.CoordinateNewton())
    with pytest.raises(ValueError, match="not separable"):
        neural_layer(solver)
    with pytest.raises(ValueError, match="not separable"):
        neural_layer(solvers.Implicit(linear_solver="diagonal"))

"""The cheaper inner step computes the same energy: the Neural potential's x-part prepared once
per solve, and plain reductions for a single set, against the direct `F(concat[x, y])` path."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_agg
import solvers
from eqx_agg._segments import segment_max
from eqx_agg.energies import AbstractEnergy

from .helpers import BACKENDS, make_backend, random_set


class Unprepared(eqx_agg.energies.Neural):
    """The Neural energy evaluated as before: `F(x_i, y) = mean(net(concat[x_i, y])²)` at
    every inner step."""

    prepare = AbstractEnergy.prepare
    prepared_potential = AbstractEnergy.prepared_potential


# first width == d + m: the first skip is the identity; otherwise a projection
@pytest.mark.parametrize("widths", [(10, 6, 4), (7, 5), (12,)])
def test_prepared_neural_energy_is_the_concatenated_one(widths):
    d, m = 3, 4
    key = jax.random.PRNGKey(0)
    prepared = eqx_agg.energies.Neural(d, m, widths=widths, key=key)
    direct = Unprepared(d, m, widths=widths, key=key)
    x = random_set(1, 9, d, scale=3.0)
    ids = jnp.array([0, 0, 2, 1, 1, 1, 2, 0, 1])
    mask = jnp.array([1, 1, 1, 0, 1, 1, 1, 1, 0], bool)
    y = random_set(2, 3, m)
    np.testing.assert_allclose(
        prepared.segment_energies(x, y, ids, mask),
        direct.segment_energies(x, y, ids, mask),
        rtol=1e-13,
    )
    one = jnp.zeros(9, jnp.int32)  # a single set: the scatter-free sums
    np.testing.assert_allclose(
        prepared.segment_energies(x, y[:1], one, mask),
        direct.segment_energies(x, y[:1], one, mask),
        rtol=1e-13,
    )


@pytest.mark.parametrize("backend", ["unrolled", "implicit"])
def test_layer_values_and_gradients_match_the_direct_potential(backend):
    d = 3
    key = jax.random.PRNGKey(3)
    solver = {
        "unrolled": lambda: solvers.Unrolled(10),
        "implicit": lambda: solvers.Implicit(steps=300),
    }[backend]()
    layers = [
        eqx_agg.EquilibriumAggregation(cls(d, 4, widths=(16, 8), key=key), solver)
        for cls in (eqx_agg.energies.Neural, Unprepared)
    ]
    x = random_set(4, 11, d)
    mask = jnp.arange(11) < 8

    def value_and_grads(layer):
        def loss(both):
            layer, x = both
            return jnp.sum(jnp.sin(layer(x, mask)))

        return eqx.filter_value_and_grad(loss)((layer, x))

    (v_prepared, g_prepared), (v_direct, g_direct) = map(value_and_grads, layers)
    np.testing.assert_allclose(v_prepared, v_direct, rtol=1e-12)
    leaves_p = jax.tree_util.tree_leaves(eqx.filter(g_prepared, eqx.is_inexact_array))
    leaves_d = jax.tree_util.tree_leaves(eqx.filter(g_direct, eqx.is_inexact_array))
    assert len(leaves_p) == len(leaves_d) > 4
    for a, b in zip(leaves_p, leaves_d, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def _flops(fn, *args) -> float:
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    return (analysis[0] if isinstance(analysis, list) else analysis)["flops"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_final_gradient_is_evaluated_only_when_the_stats_are_read(backend):
    """A jitted forward+backward that reads only the value costs one gradient evaluation less
    than one that reads the statistics at the returned point (the issue's 1/(T+1))."""
    b, m = 4, 64
    matrix = jax.random.normal(jax.random.PRNGKey(0), (m, m)) / m + jnp.eye(m)
    hessian = matrix @ matrix.T

    def energy(y, centre):
        r = y - centre
        return 0.5 * jnp.einsum("bi,ij,bj->b", r, hessian, r)

    solver = make_backend(backend, 5, 2 if backend == "truncated" else None, lr=0.3)
    centre = jax.random.normal(jax.random.PRNGKey(1), (b, m))

    def loss(centre):
        solution = solver.solve(energy, jnp.zeros((b, m)), centre)
        return jnp.sum(solution.value**2), solution.stats.grad_max_norm

    def value_only(centre):
        return jax.grad(loss, has_aux=True)(centre)[0]

    def also_stats(centre):
        return jax.grad(loss, has_aux=True)(centre)

    def one_gradient(y):
        return jax.grad(lambda y: jnp.sum(energy(y, centre)))(y)

    extra = _flops(also_stats, centre) - _flops(value_only, centre)
    assert extra >= 0.9 * _flops(one_gradient, centre)


def test_single_set_max_is_the_scatter_max_with_its_tie_gradients():
    """The scatter-free max of one set: the same value and, at ties, the same split gradient
    as `jax.ops.segment_max`; `-inf` for an empty set."""
    x = jnp.array([[1.0, 2.0], [3.0, 2.0], [3.0, -1.0], [0.5, 7.0]])
    ids = jnp.zeros(4, jnp.int32)
    weights = jnp.array([1.0, 2.0])
    for reduce in (segment_max, jax.ops.segment_max):
        value, grad = jax.value_and_grad(
            lambda x, reduce=reduce: jnp.sum(reduce(x, ids, 1) * weights)
        )(x)
        np.testing.assert_allclose(value, 3.0 + 2 * 7.0)
        np.testing.assert_allclose(grad, [[0, 0], [0.5, 0], [0.5, 0], [0, 2]])
    empty = segment_max(jnp.zeros((0, 2)), jnp.zeros(0, jnp.int32), 1)
    np.testing.assert_array_equal(empty, -jnp.inf)

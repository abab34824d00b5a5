"""The analytic energies' argmins are the poolings of Table 1 and Appendix B."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eqx_agg
import solvers

from .helpers import MAX_SET, attention_lr, padded_set, random_set

sets = st.tuples(st.integers(1, MAX_SET), st.sampled_from([1, 3, 8]), st.integers(0, 10**6))


def _solve(energy, x, mask=None, steps=600, lr=0.125):
    layer = eqx_agg.EquilibriumAggregation(energy, solvers.Unrolled(steps=steps, lr=lr, gtol=0))
    return layer.solve(x, mask)


@settings(max_examples=8)
@given(sets)
def test_mean_is_the_mean(shape):
    n, d, seed = shape
    x, mask = padded_set(seed, n, d)
    sol = _solve(eqx_agg.energies.Mean(), x, mask)
    np.testing.assert_allclose(sol.value, np.mean(np.asarray(x)[:n], axis=0), atol=1e-8)
    assert sol.stats.grad_max_norm < 1e-8


@settings(max_examples=8)
@given(sets)
def test_sum_is_the_sum(shape):
    n, d, seed = shape
    x, mask = padded_set(seed, n, d)
    sol = _solve(eqx_agg.energies.Sum(), x, mask, steps=1500)
    np.testing.assert_allclose(sol.value, np.sum(np.asarray(x)[:n], axis=0), atol=1e-8)


@settings(max_examples=8)
@given(sets)
def test_attention_is_softmax_weighted_mean(shape):
    n, d, seed = shape
    x, mask = padded_set(seed, n, d)
    energy = eqx_agg.energies.Attention(d, query_scale=1 / d, key=jax.random.PRNGKey(seed))
    sol = _solve(energy, x, mask, steps=1500, lr=attention_lr(energy, x, mask))
    weights = np.asarray(jax.nn.softmax(x[:n] @ energy.query))
    np.testing.assert_allclose(sol.value, weights @ np.asarray(x)[:n], atol=1e-7)


@pytest.mark.parametrize(
    "energy_cls, pooling", [(eqx_agg.energies.Median, np.median), (eqx_agg.energies.Max, np.max)]
)
def test_median_and_max_as_smoothing_vanishes(energy_cls, pooling):
    n = 15  # odd, so the median is unique
    x = random_set(0, n, 2)
    deltas = [0.1, 0.03, 0.01, 0.003]
    errors = []
    for delta in deltas:
        lr = 0.5 * solvers.max_stable_lr(math.log2(n + 1) / delta)
        sol = _solve(energy_cls(smoothing=delta), x, steps=3000, lr=lr)
        assert sol.stats.grad_max_norm < 1e-10
        errors.append(float(np.max(np.abs(sol.value - pooling(np.asarray(x), axis=0)))))
    assert all(e <= delta for e, delta in zip(errors, deltas, strict=True))
    assert all(later <= earlier + 1e-12 for earlier, later in zip(errors, errors[1:], strict=False))
    assert errors[-1] < 1e-3


def test_median_of_even_set_lies_between_middle_elements():
    x = jnp.array([[0.0], [1.0], [3.0], [10.0]])
    sol = _solve(eqx_agg.energies.Median(smoothing=0.01), x, steps=3000, lr=0.002)
    assert 1.0 - 1e-2 <= float(sol.value[0]) <= 3.0 + 1e-2


def test_scaled_and_unscaled_energies_share_the_argmin():
    x = random_set(1, 12, 3)
    scaled = _solve(eqx_agg.energies.Sum(scaled=True), x, steps=1500)
    unscaled = _solve(eqx_agg.energies.Sum(scaled=False), x, steps=300)
    np.testing.assert_allclose(scaled.value, unscaled.value, atol=1e-8)


def test_scaled_energy_matches_eq_13():
    x = random_set(2, 6, 2)
    y = jnp.array([0.3, -0.2])
    energy = eqx_agg.energies.Sum()
    total = 0.5 * jnp.sum(y**2) - jnp.sum(x @ y)
    expected = total / (6 + 1e-8) * math.log2(7)
    np.testing.assert_allclose(energy(x, y), expected, rtol=1e-12)
    np.testing.assert_allclose(eqx_agg.energies.Sum(scaled=False)(x, y), total, rtol=1e-12)


def test_neural_potential_is_sum_of_squares_and_nonnegative(getkey):
    energy = eqx_agg.energies.Neural(3, 2, widths=(8, 4), key=getkey())
    x, y = random_set(3, 5, 3), jnp.array([0.5, -1.0])
    potentials = jax.vmap(energy.potential, in_axes=(0, None))(x, y)
    h = jax.vmap(lambda xi: energy.net(jnp.concatenate([xi, y])))(x)
    np.testing.assert_allclose(potentials, jnp.mean(h**2, axis=-1), rtol=1e-12)
    assert jnp.all(potentials >= 0)
    reg = jax.nn.softplus(energy.raw_regularisation) * jnp.sum(y**2)
    np.testing.assert_allclose(energy.regulariser(y), reg, rtol=1e-12)
    np.testing.assert_allclose(jax.nn.softplus(energy.raw_regularisation), 0.1, rtol=1e-12)

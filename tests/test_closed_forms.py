"""With default settings, the analytic energies' argmins are the poolings of Table 1 and
Appendix B, at any set size (1 to 10^4) and data scale, ties included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eqx_agg
import solvers

from .helpers import MAX_SET, masked, set_values

POOLINGS = {"mean": np.mean, "sum": np.sum, "median": np.median, "max": np.max}
SIZES = [1, 2, 7, 100, 1001, 10_000]


def drawn_set(n: int, d: int, scale: float, seed: int) -> np.ndarray:
    """`n` values: normal and gamma draws with a third rounded to a coarse grid (ties),
    scaled by `scale` and shifted by `10 · scale`."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((n, d)) < 0.5, rng.normal(size=(n, d)), rng.gamma(0.5, 2, (n, d)))
    x = np.where(rng.random((n, d)) < 0.3, np.round(x), x)
    return scale * (x + 10)


def pooling_error(name: str, value, x: np.ndarray) -> np.ndarray:
    """Distance to the pooling: relative to `Σ|x|` for mean and sum; as a fraction of each
    coordinate's range for median and max (for an even count, to the interval between the
    two middle values: every point of it is a median)."""
    value = np.asarray(value)
    finfo = np.finfo(x.dtype)
    if name in ("mean", "sum"):
        total = np.sum(np.abs(x), axis=0) / (len(x) if name == "mean" else 1)
        return np.abs(value - POOLINGS[name](x, axis=0)) / np.maximum(total, finfo.tiny)
    # the smoothing is floored at 2 sqrt(tiny) for a set of one repeated value
    resolution = np.maximum(16 * finfo.eps * np.max(np.abs(x), axis=0), 1e4 * np.sqrt(finfo.tiny))
    spread = np.maximum(np.ptp(x, axis=0), resolution)
    if name == "max":
        return np.abs(value - np.max(x, axis=0)) / spread
    s = np.sort(x, axis=0)
    low, high = s[(len(x) - 1) // 2], s[len(x) // 2]
    return np.maximum(np.maximum(low - value, value - high), 0) / spread


@pytest.mark.parametrize("name", list(POOLINGS))
@pytest.mark.parametrize("n", SIZES)
def test_default_layer_returns_the_pooling_at_every_size_and_scale(name, n):
    energy = getattr(eqx_agg.energies, name.capitalize())()
    layer = eqx_agg.EquilibriumAggregation(energy)  # the default solver
    for seed, scale in enumerate([1e-3, 1.0, 1e3]):
        x = drawn_set(n, 3, scale, seed)
        sol = layer.solve(jnp.asarray(x))
        assert sol.stats.converged and not sol.stats.diverged
        error = pooling_error(name, sol.value, x)
        assert np.all(error <= (1e-12 if name in ("mean", "sum") else 0.01)), (scale, error)


def test_the_issues_sets_of_100_now_pool_correctly():
    """Before: the default layer returned [-1.43, 10.76, -4.28] for a mean near 0, and
    Sum/Max at N = 100 were off by 1.5 and 1.9; Median of 501 uniform values by 0.3-0.4."""
    x = np.random.default_rng(0).normal(size=(100, 3))
    for name in ("mean", "sum", "max"):
        layer = eqx_agg.EquilibriumAggregation(getattr(eqx_agg.energies, name.capitalize())())
        error = pooling_error(name, layer(jnp.asarray(x)), x)
        assert np.all(error <= (1e-12 if name != "max" else 0.01))
    u = np.random.default_rng(1).uniform(size=(501, 2))
    median = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Median())(jnp.asarray(u))
    assert np.all(np.abs(np.asarray(median) - np.median(u, axis=0)) < 0.01)


@pytest.mark.parametrize("name", list(POOLINGS))
@given(drawn=set_values(d=2))
def test_drawn_values_with_ties_pool_correctly(name, drawn):
    x, n = drawn
    energy = getattr(eqx_agg.energies, name.capitalize())()
    sol = eqx_agg.EquilibriumAggregation(energy).solve(*masked(x, n))
    assert sol.stats.converged
    error = pooling_error(name, sol.value, x[:n])
    assert np.all(error <= (1e-11 if name in ("mean", "sum") else 0.01)), error


@given(drawn=set_values(d=3), query_scale=st.sampled_from([0.01, 0.3, 3.0]))
def test_attention_is_the_softmax_weighted_mean_at_any_scale(drawn, query_scale):
    """Weights exp(hᵀx) overflow at scale 1e3; the layer's shifted weights do not."""
    x, n = drawn
    energy = eqx_agg.energies.Attention(3, query_scale=query_scale, key=jax.random.PRNGKey(n))
    value = eqx_agg.EquilibriumAggregation(energy)(*masked(x, n))
    weights = jax.nn.softmax(jnp.asarray(x[:n]) @ energy.query)
    expected = np.asarray(weights @ x[:n])
    spread = np.maximum(np.ptp(x[:n], axis=0), np.max(np.abs(x[:n]), initial=0.0))
    assert np.all(np.abs(np.asarray(value) - expected) <= 1e-9 * spread + 1e-300)


@pytest.mark.parametrize("energy_cls, pooling", [(eqx_agg.energies.Median, np.median),
                                                 (eqx_agg.energies.Max, np.max)])  # fmt: skip
def test_explicit_smoothing_is_in_data_units_and_vanishes(energy_cls, pooling):
    """`smoothing=δ` is absolute: the error shrinks with δ, and stays below δ·log(2N)."""
    n = 15  # odd, so the median is unique
    x = np.random.default_rng(0).normal(size=(n, 2))
    errors = []
    deltas = [0.1, 0.03, 0.01, 0.003]
    for delta in deltas:
        layer = eqx_agg.EquilibriumAggregation(energy_cls(smoothing=delta))
        sol = layer.solve(jnp.asarray(x))
        assert sol.stats.converged
        errors.append(float(np.max(np.abs(np.asarray(sol.value) - pooling(x, axis=0)))))
    assert all(e <= d * np.log(2 * n) for e, d in zip(errors, deltas, strict=True))
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False))


def test_median_of_an_even_set_lies_between_the_middle_elements():
    x = jnp.array([[0.0], [1.0], [3.0], [10.0]])
    value = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Median())(x)
    assert 1.0 <= float(value[0]) <= 3.0


def test_nesterov_recovers_the_mean_when_asked_to_converge():
    """The paper's forward, run long enough with a stable lr, reaches the same argmin."""
    x = np.random.default_rng(2).normal(size=(MAX_SET, 3))
    lr = 0.5 * solvers.max_stable_lr(2 * np.log2(MAX_SET + 1))
    layer = eqx_agg.EquilibriumAggregation(
        eqx_agg.energies.Mean(), solvers.Unrolled(steps=300, lr=lr, gtol=0)
    )
    np.testing.assert_allclose(layer(jnp.asarray(x)), x.mean(0), atol=1e-10)


def test_scaled_energy_matches_eq_13():
    x = np.random.default_rng(3).normal(size=(6, 2))
    y = jnp.array([0.3, -0.2])
    total = 0.5 * np.sum(np.asarray(y) ** 2) - np.sum(x @ np.asarray(y))
    expected = total / (6 + 1e-8) * np.log2(7)  # eq. 13, ε = 1e-8
    np.testing.assert_allclose(eqx_agg.energies.Sum()(x, y), expected, rtol=1e-12)
    np.testing.assert_allclose(eqx_agg.energies.Sum(scaled=False)(x, y), total, rtol=1e-12)


def test_neural_potential_is_a_mean_of_squares_and_nonnegative(getkey):
    energy = eqx_agg.energies.Neural(3, 2, widths=(8, 4), key=getkey())
    x, y = np.random.default_rng(4).normal(size=(5, 3)), jnp.array([0.5, -1.0])
    potentials = jax.vmap(energy.potential, in_axes=(0, None))(x, y)
    h = jax.vmap(lambda xi: energy.net(jnp.concatenate([xi, y])))(x)
    np.testing.assert_allclose(potentials, jnp.mean(h**2, axis=-1), rtol=1e-12)
    assert jnp.all(potentials >= 0)
    np.testing.assert_allclose(energy.regulariser(y), 0.1 * 1.25, rtol=1e-12)


def test_attention_padding_rows_do_not_overflow():
    """Found by the long hypothesis profile: a padding row's logit (0) minus the set's
    largest logit (-884) overflowed exp() and poisoned the solve with NaN."""
    energy = eqx_agg.energies.Attention(3, query_scale=3.0, key=jax.random.PRNGKey(8))
    x, mask = masked(np.concatenate([np.full((8, 3), -101.0), np.zeros((4, 3))]), 8)
    layer = eqx_agg.EquilibriumAggregation(energy)
    np.testing.assert_allclose(layer(x, mask), -101.0, rtol=1e-12)
    grad = jax.grad(lambda x: jnp.sum(layer(x, mask)))(x)
    np.testing.assert_allclose(grad[:8], 1 / 8, rtol=1e-9)
    np.testing.assert_array_equal(grad[8:], 0)

"""Bad input: clear errors at trace time for shapes, detection at run time for values."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_agg
import solvers

from .helpers import BACKENDS, make_backend, random_set


def _layer(solver=None, energy=None):
    energy = energy or eqx_agg.energies.Neural(3, 2, widths=(8,), key=jax.random.PRNGKey(0))
    return eqx_agg.EquilibriumAggregation(energy, solver or solvers.Unrolled(steps=5))


@pytest.mark.parametrize("shape", [(3,), (2, 4, 3), ()])
def test_wrong_rank_names_the_shape(shape):
    with pytest.raises(ValueError, match=re_shape(shape)):
        _layer()(jnp.ones(shape))


def re_shape(shape):
    return "shape " + str(shape).replace("(", r"\(").replace(")", r"\)")


def test_mismatched_feature_size_names_both_sizes():
    with pytest.raises(ValueError, match="built for elements of size 3, got elements of size 4"):
        _layer()(jnp.ones((5, 4)))
    attention = eqx_agg.energies.Attention(2, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="size 2, got elements of size 3"):
        _layer(energy=attention)(jnp.ones((5, 3)))


def test_bad_mask_and_segment_ids_name_the_shapes():
    x = jnp.ones((5, 3))
    with pytest.raises(ValueError, match=r"mask must have shape \(5,\) .* got shape \(4,\)"):
        _layer()(x, jnp.ones(4, bool))
    with pytest.raises(TypeError, match="mask"):
        _layer()(x, jnp.ones(5))
    with pytest.raises(ValueError, match=r"segment_ids must have shape \(5,\) .* shape \(3,\)"):
        _layer().segments(x, jnp.zeros(3, int), 2)
    with pytest.raises(TypeError, match="segment_ids"):
        _layer().segments(x, jnp.zeros(5), 2)
    with pytest.raises(ValueError, match="num_segments must be at least 1"):
        _layer().segments(x, jnp.zeros(5, int), 0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: solvers.Unrolled(steps=0),
        lambda: solvers.Unrolled(lr=0.0),
        lambda: solvers.Implicit(momentum=1.0),
        lambda: solvers.Implicit(linear_solver="qr"),
        lambda: solvers.Implicit(ridge=-1.0),
        lambda: solvers.Truncated(steps=5, k=6),
        lambda: solvers.Truncated(steps=5, k=0),
        lambda: solvers.Unrolled(gtol=-1.0),
        lambda: solvers.Unrolled(clip=0.0),
        lambda: eqx_agg.energies.Median(smoothing=0.0),
        lambda: eqx_agg.energies.Max(smoothing=-1.0),
        lambda: eqx_agg.energies.Neural(2, 2, regularisation=0.0, key=jax.random.PRNGKey(0)),
    ],
)
def test_bad_hyperparameters_raise(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_non_finite_input_is_detected(bad):
    x = random_set(0, 5, 3).at[2, 1].set(bad)
    with pytest.raises(eqx.EquinoxRuntimeError, match="NaN or inf in an unmasked row"):
        _layer()(x)
    # Under an outer jit the error surfaces through XLA's runtime error.
    with pytest.raises((eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError), match="NaN or inf"):
        jax.jit(jax.vmap(_layer()))(jnp.stack([x, x]))
    masked = _layer()(x, jnp.arange(5) != 2)
    np.testing.assert_allclose(masked, _layer()(jnp.delete(x, 2, axis=0)), rtol=1e-12)


def test_non_finite_input_without_throw_is_reported_not_hidden():
    x = random_set(0, 5, 3).at[2, 1].set(jnp.nan)
    sol = _layer(solvers.Unrolled(steps=5, throw=False)).solve(x)
    assert sol.stats.diverged
    assert not np.all(np.isfinite(sol.value))


def test_divergence_raises_and_is_reported_without_throw():
    n = 30  # Mean's curvature 2 log2(31) ≈ 9.9: lr = 0.3 is far past the 1.36 / L limit
    x = random_set(1, n, 2)
    energy = eqx_agg.energies.Mean()
    assert solvers.max_stable_lr(2 * np.log2(n + 1)) < 0.3
    with pytest.raises(eqx.EquinoxRuntimeError, match="diverged"):
        _layer(solvers.Unrolled(steps=30, lr=0.3), energy)(x)
    sol = _layer(solvers.Unrolled(steps=30, lr=0.3, throw=False), energy).solve(x)
    assert sol.stats.diverged and not sol.stats.converged
    stable = _layer(solvers.Unrolled(steps=30, lr=0.1, throw=False), energy).solve(x)
    assert not stable.stats.diverged


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("energy_name", ["mean", "neural"])
def test_empty_set_returns_y0_with_finite_gradients(backend, energy_name):
    energy = (
        eqx_agg.energies.Mean()
        if energy_name == "mean"
        else eqx_agg.energies.Neural(3, 2, widths=(8,), key=jax.random.PRNGKey(0))
    )
    layer = _layer(make_backend(backend, steps=6), energy)
    x, mask = random_set(2, 4, 3), jnp.zeros(4, bool)
    value = layer(x, mask)
    np.testing.assert_array_equal(value, jnp.zeros_like(value))
    grads, g_x = eqx.filter_grad(lambda both: jnp.sum(both[0](both[1], mask)))((layer, x))
    assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    np.testing.assert_array_equal(g_x, jnp.zeros_like(x))


def test_empty_set_with_attention_reads_out_zero():
    layer = _layer(energy=eqx_agg.energies.Attention(3, key=jax.random.PRNGKey(0)))
    x = random_set(2, 4, 3)
    np.testing.assert_array_equal(layer(x, jnp.zeros(4, bool)), jnp.zeros(3))

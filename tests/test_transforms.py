"""`jit`, `vmap` and `segments` agree with the single-set call, values and gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import eqx_agg

from .helpers import BACKENDS, make_backend, random_set


def _layer(backend):
    energy = eqx_agg.energies.Neural(3, 2, widths=(16, 8), key=jax.random.PRNGKey(0))
    return eqx_agg.EquilibriumAggregation(energy, make_backend(backend, steps=12))


SIZES = [4, 1, 7, 0, 5]


def _padded_sets():
    """The sets padded to one shape (one compilation for every single-set call), their
    masks, and their elements stored back to back with segment ids."""
    xs = [random_set(i, n, 3) for i, n in enumerate(SIZES)]
    n_max = max(SIZES)
    padded = jnp.stack([jnp.pad(x, ((0, n_max - len(x)), (0, 0))) for x in xs])
    masks = jnp.arange(n_max)[None, :] < jnp.array(SIZES)[:, None]
    ids = jnp.repeat(jnp.arange(len(SIZES)), jnp.array(SIZES), total_repeat_length=sum(SIZES))
    return padded, masks, jnp.concatenate(xs), ids


@pytest.mark.parametrize("backend", BACKENDS)
def test_jit_and_vmap_agree_with_single_calls(backend):
    layer = _layer(backend)
    padded, masks, x, _ = _padded_sets()
    singles = jnp.stack([layer(xi[mi]) for xi, mi in zip(padded, masks, strict=True)])
    batched = jax.jit(jax.vmap(layer))(padded, masks)
    np.testing.assert_allclose(batched, singles, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(eqx.filter_jit(layer)(x[:4]), singles[0], rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_segments_agree_with_single_calls_values_and_gradients(backend):
    layer = _layer(backend)
    padded, masks, x, segment_ids = _padded_sets()
    weights = jax.random.normal(jax.random.PRNGKey(1), (len(SIZES), 2))

    def single_loss(layer, padded):
        ys = [layer(xi, mi) for xi, mi in zip(padded, masks, strict=True)]
        return jnp.sum(weights * jnp.tanh(jnp.stack(ys)))

    def segment_loss(layer, x):
        return jnp.sum(weights * jnp.tanh(layer.segments(x, segment_ids, len(SIZES))))

    singles = jnp.stack([layer(xi, mi) for xi, mi in zip(padded, masks, strict=True)])
    np.testing.assert_allclose(layer.segments(x, segment_ids, len(SIZES)), singles, rtol=1e-10)
    g_single, g_padded = eqx.filter_grad(lambda args: single_loss(*args))((layer, padded))
    g_segment, g_x = eqx.filter_grad(lambda args: segment_loss(*args))((layer, x))
    flat = lambda g: jnp.concatenate(  # noqa: E731
        [jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(g.energy)]
    )
    np.testing.assert_allclose(flat(g_segment), flat(g_single), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(g_x, g_padded[masks], rtol=1e-8, atol=1e-12)


def test_segments_stop_each_set_at_its_own_tolerance():
    """A set that converges early stops moving; the others keep iterating."""
    layer = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean(), make_backend("unrolled", 200))
    x = jnp.array([[0.0], [0.0], [5.0], [-3.0]])
    sol = layer.solve_segments(x, jnp.array([0, 0, 1, 1]), 2)
    assert sol.stats.num_steps[0] == 0  # y0 = 0 is already the mean of {0, 0}
    assert sol.stats.num_steps[1] > 10
    np.testing.assert_allclose(sol.value[:, 0], [0.0, 1.0], atol=1e-3 / 0.5)  # gtol / curvature


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_optimizer_step_does_not_retrace(backend):
    """Every learnable leaf has a fixed dtype, so a jitted Adam step compiles once (weak-typed
    scalars turned strong after the first update and forced a retrace)."""
    layer = _layer(backend)
    x = random_set(0, 5, 3)
    optimizer = optax.adam(1e-2)
    traces = []

    @eqx.filter_jit
    def step(layer, state):
        traces.append(None)
        grads = eqx.filter_grad(lambda layer: jnp.sum(layer(x) ** 2))(layer)
        updates, state = optimizer.update(grads, state, eqx.filter(layer, eqx.is_array))
        return eqx.apply_updates(layer, updates), state

    state = optimizer.init(eqx.filter(layer, eqx.is_array))
    for _ in range(3):
        layer, state = step(layer, state)
    assert len(traces) == 1

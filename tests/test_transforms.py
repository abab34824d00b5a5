"""`jit`, `vmap` and `segments` agree with single-set calls, values and gradients, for
batches whose sets differ in size and scale."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import eqx_agg
import solvers

from .helpers import flat, neural_layer, random_set

SIZES = [4, 1, 7, 0, 5]
SCALES = [1.0, 1e-3, 1e3, 1.0, 10.0]
SOLVERS = {
    "unrolled": lambda: solvers.Unrolled(steps=12),
    "implicit": lambda: solvers.Implicit(steps=3000, lr=0.5),
    "truncated": lambda: solvers.Truncated(steps=12, k=3),
}


def _layers():
    """Every backend on the learned potential, and two analytic energies' defaults."""
    yield from ((name, neural_layer(make())) for name, make in SOLVERS.items())
    yield "median", eqx_agg.EquilibriumAggregation(eqx_agg.energies.Median())
    yield "sum", eqx_agg.EquilibriumAggregation(eqx_agg.energies.Sum())


LAYERS = dict(_layers())


def _padded_sets(neural: bool):
    """Sets of different sizes (one empty) and scales, padded to one shape (one compilation
    for every single-set call), their masks, and their elements back to back with ids. The
    learned potential sees scales up to 10 (it saturates, and converges slowly, beyond)."""
    scales = [min(s, 10.0) for s in SCALES] if neural else SCALES
    xs = [random_set(i, n, 3, s) for i, (n, s) in enumerate(zip(SIZES, scales, strict=True))]
    n_max = max(SIZES)
    padded = jnp.stack([jnp.pad(x, ((0, n_max - len(x)), (0, 0))) for x in xs])
    masks = jnp.arange(n_max)[None, :] < jnp.array(SIZES)[:, None]
    ids = jnp.repeat(jnp.arange(len(SIZES)), jnp.array(SIZES), total_repeat_length=sum(SIZES))
    return padded, masks, jnp.concatenate(xs), ids


@pytest.mark.parametrize("name", list(LAYERS))
def test_jit_and_vmap_agree_with_single_calls(name):
    layer = LAYERS[name]
    padded, masks, x, _ = _padded_sets(name in SOLVERS)
    singles = jnp.stack([layer(xi, mi) for xi, mi in zip(padded, masks, strict=True)])
    batched = jax.jit(jax.vmap(layer))(padded, masks)
    np.testing.assert_allclose(batched, singles, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(eqx.filter_jit(layer)(x[:4]), singles[0], rtol=1e-12)


@pytest.mark.parametrize("name", list(LAYERS))
def test_segments_agree_with_single_calls_values_and_gradients(name):
    layer = LAYERS[name]
    padded, masks, x, segment_ids = _padded_sets(name in SOLVERS)
    weights = jax.random.normal(jax.random.key(1), (len(SIZES), 3))

    def single_loss(layer, padded):
        ys = [layer(xi, mi) for xi, mi in zip(padded, masks, strict=True)]
        return jnp.sum(weights * jnp.tanh(jnp.stack(ys)))

    def segment_loss(layer, x):
        return jnp.sum(weights * jnp.tanh(layer.segments(x, segment_ids, len(SIZES))))

    singles = jnp.stack([layer(xi, mi) for xi, mi in zip(padded, masks, strict=True)])
    np.testing.assert_allclose(layer.segments(x, segment_ids, len(SIZES)), singles, rtol=1e-9)
    g_single, g_padded = eqx.filter_grad(lambda args: single_loss(*args))((layer, padded))
    g_segment, g_x = eqx.filter_grad(lambda args: segment_loss(*args))((layer, x))
    np.testing.assert_allclose(flat(g_segment.energy), flat(g_single.energy), rtol=1e-7,
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(g_x, g_padded[masks], rtol=1e-7, atol=1e-12)


def test_segments_stop_each_set_at_its_own_tolerance():
    """A set that converges early stops moving; the others keep iterating."""
    layer = eqx_agg.EquilibriumAggregation(
        eqx_agg.energies.Mean(), solvers.Unrolled(steps=200, lr=0.1)
    )
    x = jnp.array([[0.0], [0.0], [5.0], [-3.0]])
    sol = layer.solve_segments(x, jnp.array([0, 0, 1, 1]), 2)
    assert sol.stats.num_steps[0] == 0  # y0 = 0 is already the mean of {0, 0}
    assert sol.stats.num_steps[1] > 10
    np.testing.assert_array_less(sol.stats.grad_max_norm, 1e-3)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_an_optimizer_step_does_not_retrace(name):
    """Every learnable leaf has a fixed dtype, so a jitted Adam step compiles once (weak-typed
    scalars turned strong after the first update and forced a retrace)."""
    layer = neural_layer(SOLVERS[name]())
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

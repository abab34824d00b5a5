"""Float32, the dtype training runs in: defaults still pool correctly, Implicit's default
tolerances give an accurate gradient, and every backend trains to finite values."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import eqx_agg
import solvers

from .helpers import BACKENDS, make_backend, neural_layer, relative_error
from .test_closed_forms import POOLINGS, drawn_set, pooling_error


def f32(tree):
    """Every floating-point array of `tree` in float32."""
    return jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, tree
    )


@pytest.mark.parametrize("name", list(POOLINGS))
def test_default_layer_pools_in_float32(name):
    layer = eqx_agg.EquilibriumAggregation(getattr(eqx_agg.energies, name.capitalize())())
    for n in [1, 7, 100, 10_000]:
        for seed, scale in enumerate([1e-3, 1.0, 1e3]):
            x = drawn_set(n, 3, scale, seed).astype(np.float32)
            sol = layer.solve(jnp.asarray(x))
            assert sol.value.dtype == jnp.float32 and sol.stats.converged
            error = pooling_error(name, sol.value, x)
            assert np.all(error <= (1e-4 if name in ("mean", "sum") else 0.01)), (n, scale, error)


def test_implicit_default_tolerance_gives_an_accurate_float32_gradient():
    """The float32 defaults (forward to 1e-4, linear solve to 1e-5) against a float64
    reference solved to 1e-12."""
    x = np.random.default_rng(0).normal(size=(37, 3))
    w = jnp.array([0.3, -1.0, 0.5])

    def grad_x(layer, x):
        return jax.grad(lambda x: jnp.dot(w.astype(x.dtype), layer(x)))(x)

    layer = neural_layer(solvers.Implicit(steps=2000, lr=0.5))
    reference = grad_x(neural_layer(solvers.Implicit(steps=4000, lr=0.5, gtol=1e-12)), x)
    g32 = grad_x(f32(layer), jnp.asarray(x, jnp.float32))
    assert g32.dtype == jnp.float32
    assert relative_error(g32, reference) < 1e-2


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_trains_in_float32(backend):
    """Implicit's forward must converge at every step of training: with lr 0.5 it stopped
    converging after 8 Adam steps (the potential's curvature grew past the stable range,
    and Implicit cannot learn lr); the paper's 0.125 with 500 steps stays converged."""
    steps = 500 if make_backend(backend, 10).runs_to_tolerance else 10
    layer = f32(neural_layer(make_backend(backend, steps)))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 9, 3)), jnp.float32)
    target = jnp.ones((4, 3), jnp.float32)
    optimizer = optax.adam(1e-2)
    state = optimizer.init(eqx.filter(layer, eqx.is_array))

    @eqx.filter_jit
    def step(layer, state):
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.mean((jax.vmap(m)(x) - target) ** 2))(
            layer
        )
        updates, state = optimizer.update(grads, state, eqx.filter(layer, eqx.is_array))
        return eqx.apply_updates(layer, updates), state, loss

    losses = []
    for _ in range(20):
        layer, state, loss = step(layer, state)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(
        eqx.filter(layer, eqx.is_inexact_array)))  # fmt: skip

"""Checkpointed: Unrolled's values and gradients exactly, in memory that grows like the
checkpoints, not the steps."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import solvers

from .helpers import flat, neural_layer, random_set


def _loss(layer, x):
    return jnp.sum(jnp.sin(layer(x)))


@pytest.mark.parametrize("steps", [10, 100])
def test_checkpointed_is_unrolled_exactly(steps):
    """The same values and gradients, lr and momentum included, to 1e-12 (float64)."""
    x = random_set(9, 7, 3)
    results = []
    for cls in [solvers.Unrolled, solvers.Checkpointed]:
        layer = neural_layer(cls(steps=steps, gtol=0.0))
        value, grad = eqx.filter_value_and_grad(lambda m: _loss(m, x))(layer)
        results.append((float(value), flat((grad.energy, grad.solver.method))))
    (v_u, g_u), (v_c, g_c) = results
    assert abs(v_u - v_c) <= 1e-12 * abs(v_u)
    np.testing.assert_allclose(g_c, g_u, rtol=1e-12, atol=1e-14)


def test_backward_memory_is_a_fraction_of_unrolleds_at_100_steps():
    x = random_set(3, 40, 3)

    def temp_bytes(solver):
        layer = neural_layer(solver)
        grad = jax.jit(jax.grad(lambda x: _loss(layer, x)))
        return grad.lower(x).compile().memory_analysis().temp_size_in_bytes

    unrolled = temp_bytes(solvers.Unrolled(100, gtol=0.0))
    checkpointed = temp_bytes(solvers.Checkpointed(100, gtol=0.0))
    assert checkpointed < 0.3 * unrolled


def test_checkpoints_below_one_are_refused():
    with pytest.raises(ValueError, match="checkpoints"):
        solvers.Checkpointed(10, checkpoints=0)

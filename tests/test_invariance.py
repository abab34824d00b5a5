"""Every energy × backend is invariant to permutations and to masked padding rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eqx_agg

from .helpers import (
    BACKENDS,
    ENERGIES,
    MAX_SET,
    make_backend,
    make_energy,
    padded_set,
    stable_lr,
)

sets = st.tuples(st.integers(0, MAX_SET), st.sampled_from([2, 5]), st.integers(0, 10**6))


def _layer(energy_name, backend_name, d, seed):
    energy = make_energy(energy_name, d, jax.random.PRNGKey(seed))
    return eqx_agg.EquilibriumAggregation(
        energy, make_backend(backend_name, 20, lr=stable_lr(energy_name))
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("energy", ENERGIES)
@settings(max_examples=3)
@given(shape=sets)
def test_permutation_invariance(energy, backend, shape):
    n, d, seed = shape
    layer = _layer(energy, backend, d, seed)
    x, mask = padded_set(seed, n, d)
    perm = np.random.default_rng(seed).permutation(MAX_SET)
    np.testing.assert_allclose(layer(x, mask), layer(x[perm], mask[perm]), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("energy", ENERGIES)
@settings(max_examples=3)
@given(shape=sets)
def test_padding_invariance(energy, backend, shape):
    """More padding rows, holding NaN, inf and huge values, change nothing."""
    n, d, seed = shape
    layer = _layer(energy, backend, d, seed)
    x, mask = padded_set(seed, n, d)
    garbage = jnp.tile(jnp.array([jnp.nan, jnp.inf, -1e30]), MAX_SET)[:, None] * jnp.ones(d)
    more_x = jnp.concatenate([x, garbage])
    more_mask = jnp.concatenate([mask, jnp.zeros(3 * MAX_SET, bool)])
    np.testing.assert_allclose(layer(x, mask), layer(more_x, more_mask), rtol=1e-9, atol=1e-10)

"""Every energy × backend is invariant to permutations and to masked padding rows, for
drawn values (ties, duplicates, scales from 1e-3 to 1e3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import eqx_agg
import solvers

from .helpers import ANALYTIC, MAX_SET, make_energy, masked, set_values

NEURAL_SOLVERS = {
    "unrolled": lambda: solvers.Unrolled(steps=20),
    "implicit": lambda: solvers.Implicit(steps=2000, lr=0.5, throw=False),
    "truncated": lambda: solvers.Truncated(steps=20, k=5),
}
CASES = [(name, "default") for name in ANALYTIC] + [("neural", b) for b in NEURAL_SOLVERS]


def _layer(energy_name, backend, d):
    energy = make_energy(energy_name, d, jax.random.key(0))
    solver = None if backend == "default" else NEURAL_SOLVERS[backend]()
    return eqx_agg.EquilibriumAggregation(energy, solver)


def _close(a, b, x):
    """Equal up to rounding relative to the data's magnitude."""
    scale = np.max(np.abs(x), initial=0.0) + 1
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-9 * scale)


@pytest.mark.parametrize("energy, backend", CASES)
@given(drawn=set_values(d=2, min_size=0))
def test_permutation_invariance(energy, backend, drawn):
    x, n = drawn
    layer = _layer(energy, backend, 2)
    x, mask = masked(x, n)
    perm = np.random.default_rng(n).permutation(MAX_SET)
    _close(layer(x, mask), layer(x[perm], mask[perm]), x[:n])


@pytest.mark.parametrize("energy, backend", CASES)
@given(drawn=set_values(d=2, min_size=0))
def test_padding_invariance(energy, backend, drawn):
    """More padding rows, holding NaN, inf and huge values, change nothing."""
    x, n = drawn
    layer = _layer(energy, backend, 2)
    x, mask = masked(x, n)
    garbage = jnp.tile(jnp.array([jnp.nan, jnp.inf, -1e30]), MAX_SET)[:, None] * jnp.ones(2)
    more_x = jnp.concatenate([x, garbage])
    more_mask = jnp.concatenate([mask, jnp.zeros(3 * MAX_SET, bool)])
    _close(layer(x, mask), layer(more_x, more_mask), x[:n])

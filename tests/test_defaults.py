"""What a user gets without choosing: every layer's default forward converges in float32 and
float64, a separable energy of one's own gets the exact analytic solver, and a float32 set
runs through a float64 layer."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import eqx_agg
import solvers

from .helpers import BACKENDS, make_backend, random_set

SEEDS = range(5)


def _layers(solver):
    """Every solved layer with `solver` (None: its default), for elements of size 3."""
    key = jax.random.key(1)
    neural = eqx_agg.energies.Neural(3, 4, (16, 8), key=key)
    analytic = [eqx_agg.energies.Mean(), eqx_agg.energies.Median(), eqx_agg.energies.Max(),
                eqx_agg.energies.Sum(), eqx_agg.energies.Attention(3, key=key)]  # fmt: skip
    yield "neural", eqx_agg.EquilibriumAggregation(neural, solver)
    for energy in analytic:
        yield type(energy).__name__, eqx_agg.EquilibriumAggregation(energy, solver)
    yield "otke", eqx_agg.OTKE(3, 4, solver=solver, key=key)
    yield "rotp", eqx_agg.ROTP(3, solver=solver, key=key)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_default_forward_converges_in_float32_and_float64(dtype):
    """`Implicit()` on standard-normal sets of 20: OTKE's Sinkhorn needed 420 steps in
    float32, past the old default cap of 300."""
    jax.config.update("jax_enable_x64", dtype == "float64")
    try:
        for name, layer in _layers(solvers.Implicit()):
            layer = jax.tree_util.tree_map(
                lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, layer
            )
            for seed in SEEDS:
                x = jax.random.normal(jax.random.PRNGKey(seed), (20, 3), dtype)
                sol = eqx.filter_jit(layer.solve)(x)
                assert sol.stats.converged, (name, seed, float(sol.stats.grad_max_norm))
    finally:
        jax.config.update("jax_enable_x64", True)


class Huber(eqx_agg.energies.AbstractEnergy):
    """The Huber energy of docs/extending.md: declared separable, no solver of its own."""

    scaled: bool = eqx.field(default=True, static=True)
    separable = True

    def potential(self, x_i, y):
        r = jnp.abs(x_i - y)
        return jnp.sum(jnp.where(r < 1.0, 0.5 * r**2, r - 0.5))

    def regulariser(self, y):
        return jnp.zeros((), y.dtype)

    def aggregate_size(self, in_size):
        return in_size


def test_an_energy_declared_separable_gets_the_analytic_default_solver():
    """It got the learned default `Unrolled(steps=10)` and returned 1.47 where the argmin is
    0.999, with converged False, and nothing said so."""
    layer = eqx_agg.EquilibriumAggregation(Huber())
    assert isinstance(layer.solver, solvers.Implicit)
    assert isinstance(layer.solver.method, solvers.CoordinateNewton)
    x = np.array([[0.0], [1.2], [10.0], [0.3], [2.1]])
    slope = lambda y: np.sum(np.clip(y - x, -1, 1))  # noqa: E731  (the energy's derivative)
    argmin = scipy.optimize.brentq(slope, 0, 10, xtol=1e-15)
    sol = layer.solve(jnp.asarray(x))
    assert sol.stats.converged
    np.testing.assert_allclose(sol.value, [argmin], rtol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_float32_set_runs_through_a_float64_layer(backend):
    """With x64 on, a float32 set crashed every backend (scan carry float32 vs float64): it
    is cast to the layer's dtype."""
    steps = 200 if make_backend(backend, 10).runs_to_tolerance else 10
    energy = eqx_agg.energies.Neural(3, 4, (8,), key=jax.random.key(0))
    layer = eqx_agg.EquilibriumAggregation(energy, make_backend(backend, steps))
    x = random_set(0, 9, 3)
    value = layer(x.astype(jnp.float32))
    assert value.dtype == jnp.float64
    np.testing.assert_allclose(value, layer(x.astype(jnp.float32).astype(jnp.float64)))
    grad = jax.grad(lambda x: jnp.sum(layer(x)))(x.astype(jnp.float32))
    assert grad.dtype == jnp.float32 and np.all(np.isfinite(grad))

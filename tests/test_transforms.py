"""`vmap` and `segments` agree with single-set calls, values and gradients (w.r.t. the
inputs and the parameters), for drawn sets of different sizes, empty ones included, and
scales, stored together (eqx_agg.testing); each set stops at its own tolerance; an optimizer
step does not retrace."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eqx_agg
import solvers
from eqx_agg import testing

from .helpers import ANALYTIC, BACKENDS, make_backend, make_energy, neural_layer, random_set

D = 3


def _neural_solver(backend: str) -> solvers.AbstractBackend:
    """12 steps (3 taped); a backend that runs to tolerance runs Nesterov (lr 0.5), at most
    3000 steps."""
    solver = make_backend(backend, 12, k=3)
    return make_backend(backend, 3000, lr=0.5) if solver.runs_to_tolerance else solver


LAYERS = {
    **{f"neural-{backend}": neural_layer(_neural_solver(backend)) for backend in BACKENDS},
    **{name: eqx_agg.EquilibriumAggregation(make_energy(name, D, jax.random.key(0)))
       for name in ANALYTIC},
}  # fmt: skip
"""The learned potential under every backend, the analytic energies with their defaults."""

NEURAL_SETS = testing.segmented_sets(
    D, num_segments=3, max_size=6, scales=(1e-3, 1e-2, 1.0, 10.0), offsets=(0.0, 3.0),
    dtypes=(np.float64,),
)  # fmt: skip
"""The learned potential sees scales up to 10 (it saturates, and converges slowly, beyond)."""

ANALYTIC_SETS = testing.segmented_sets(D, num_segments=3, max_size=6, dtypes=(np.float64,))


@pytest.mark.parametrize("name", LAYERS)
@given(data=st.data())
def test_vmap_and_segments_agree_with_single_calls(name, data):
    """Values to rounding (`atol=0`), gradients w.r.t. `x` and the parameters to `10 √eps`."""
    drawn = data.draw(NEURAL_SETS if name.startswith("neural") else ANALYTIC_SETS)
    testing.check_batch_independence(LAYERS[name], *drawn, atol=0.0)


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


@pytest.mark.parametrize("name", ["unrolled", "implicit", "truncated"])
def test_an_optimizer_step_does_not_retrace(name):
    """Every learnable leaf has a fixed dtype, so a jitted Adam step compiles once (weak-typed
    scalars turned strong after the first update and forced a retrace)."""
    layer = neural_layer(_neural_solver(name))
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

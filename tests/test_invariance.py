"""Every energy of the EA layer, and the learned one under every backend, is invariant to
permutations and to masked padding rows (NaN, ±inf, 1e30, which get no gradient), for drawn
values: ties, duplicates, scales from 1e-3 to 1e3 (eqx_agg.testing)."""

import jax
import numpy as np
import pytest
from hypothesis import given

import eqx_agg
from eqx_agg import testing

from .helpers import ANALYTIC, BACKENDS, make_backend, make_energy

D = 2


def _neural(backend: str) -> eqx_agg.EquilibriumAggregation:
    """The learned potential under `backend`: 20 steps (5 taped); a backend that runs to
    tolerance runs Nesterov (lr 0.5) for at most 2000 steps, and reports rather than raises
    a set that does not converge (the potential saturates at scale 1e3): its value is still
    compared."""
    solver = make_backend(backend, 20, k=5)
    if solver.runs_to_tolerance:
        solver = make_backend(backend, 2000, lr=0.5, throw=False)
    return eqx_agg.EquilibriumAggregation(make_energy("neural", D, jax.random.key(0)), solver)


ANALYTIC_LAYERS = {
    name: eqx_agg.EquilibriumAggregation(make_energy(name, D, jax.random.key(0)))
    for name in ANALYTIC
}
"""The analytic energies with their default solver (CoordinateNewton to tolerance); they
compute in the data's dtype, so they are drawn float32 and float64 sets."""

NEURAL_LAYERS = {backend: _neural(backend) for backend in BACKENDS}
"""The learned potential under every backend; its parameters are float64, so it computes in
float64 whatever the data's dtype, and is drawn float64 sets only."""


def _check(layer, drawn):
    """The same procedure on the same set: equal up to rounding (`atol=0`), whatever the
    solver's tolerance."""
    testing.check_permutation_invariance(layer, *drawn, atol=0.0)
    testing.check_padding_invariance(layer, *drawn, atol=0.0)


@pytest.mark.parametrize("energy", ANALYTIC_LAYERS)
@given(drawn=testing.sets(D, min_size=2))
def test_analytic_energies(energy, drawn):
    _check(ANALYTIC_LAYERS[energy], drawn)


@pytest.mark.parametrize("backend", NEURAL_LAYERS)
@given(drawn=testing.sets(D, min_size=2, dtypes=(np.float64,)))
def test_learned_potential_under_every_backend(backend, drawn):
    _check(NEURAL_LAYERS[backend], drawn)

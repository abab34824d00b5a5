"""Every forward method × every backend: the value and gradient at convergence against a
dense-LU implicit reference, consistent stats, and a set that converges early still gets its
gradient. A new method or backend is one row of `tests/helpers.py`'s tables."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_agg
import solvers

from .helpers import MATRIX_BACKENDS, MATRIX_METHODS, TIGHT, flat, random_set, relative_error

SIZES = [6, 2]
APPROXIMATE = 1e-3
"""Relative error allowed to a backend that truncates the implicit gradient's series."""


def _tolerance(method: str, backend: str) -> float:
    """Exact backends: the method's derivative tolerance (its iterates' derivative may
    converge more slowly than they do); approximate ones: `APPROXIMATE` at least."""
    derivative = MATRIX_METHODS[method].derivative_tolerance
    if MATRIX_BACKENDS[backend].kind == "exact":
        return derivative
    return max(derivative, APPROXIMATE)


def _sets():
    """Two sets of different sizes and scales, stored together."""
    xs = [random_set(10 + i, n, 3, 0.5 if i else 1.0) for i, n in enumerate(SIZES)]
    ids = jnp.repeat(jnp.arange(len(SIZES)), jnp.array(SIZES), total_repeat_length=sum(SIZES))
    return jnp.concatenate(xs), ids


def _loss(layer, x, ids):
    out = layer.segments(x, ids, len(SIZES))
    weights = jnp.cos(jnp.arange(out.size, dtype=out.dtype)).reshape(out.shape)
    return jnp.sum(weights * out)


@functools.cache
def _run(method_name: str, backend_name: str | None):
    """Value, gradient (w.r.t. the layer's parameters and the inputs), stats and energy
    residual of one method under one backend at its converged settings; `backend_name=None`
    is the reference: Implicit with a dense LU solve, the method at tolerance 1e-12."""
    case = MATRIX_METHODS[method_name]
    method = case.method()
    if backend_name is None:
        solver = solvers.Implicit(case.steps, method=method.with_tolerance(1e-12),
                                  linear_solver="lu")  # fmt: skip
    else:
        solver = MATRIX_BACKENDS[backend_name].converged(case)
    layer = case.layer(solver)
    x, ids = _sets()

    @eqx.filter_jit
    def run(layer, x):
        sol = layer.solve_segments(x, ids, len(SIZES))
        grads = eqx.filter_grad(lambda both: _loss(both[0], both[1], ids))((layer, x))
        return sol, grads

    sol, (g_layer, g_x) = run(layer, x)
    g_theta = eqx.filter(eqx.tree_at(lambda m: m.solver, g_layer, None), eqx.is_array)
    return {
        "value": np.asarray(sol.value),
        "grad": np.concatenate([flat(g_theta), np.asarray(g_x).ravel()]),
        "grad_x": np.asarray(g_x),
        "stats": sol.stats,
        "ids": np.asarray(ids),
        "tolerance": solver.method.resolve(x.dtype).tolerance or TIGHT,
    }


MATRIX = [
    pytest.param(m, b, marks=pytest.mark.xdist_group(f"matrix-{m}"))  # one worker per method
    for m in MATRIX_METHODS
    for b in MATRIX_BACKENDS
]
"""Every method × every backend; one method's runs share a worker (and its reference)."""


@pytest.mark.parametrize("method, backend", MATRIX)
def test_value_at_convergence(method, backend):
    got, reference = _run(method, backend), _run(method, None)
    np.testing.assert_allclose(got["value"], reference["value"], rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("method, backend", MATRIX)
def test_gradient_at_convergence_is_the_implicit_one(method, backend):
    got, reference = _run(method, backend), _run(method, None)
    assert relative_error(got["grad"], reference["grad"]) < _tolerance(method, backend)


@pytest.mark.parametrize("method, backend", MATRIX)
def test_stats_are_consistent(method, backend):
    """Every set converged, none diverged; the final residual is below the history's last
    and the method's tolerance; steps are counted within the cap."""
    got = _run(method, backend)
    stats = got["stats"]
    steps = stats.grad_max_norm_history.shape[1]
    assert stats.converged.all() and not stats.diverged.any()
    assert np.all(np.asarray(stats.num_steps) >= 1) and np.all(stats.num_steps <= steps)
    assert np.all(np.isfinite(stats.aux_loss)) and np.all(stats.aux_loss >= 0)
    np.testing.assert_array_less(stats.grad_max_norm, 10 * got["tolerance"] + 1e-12)


@pytest.mark.parametrize("method, backend", MATRIX)
def test_a_set_that_converges_early_still_gets_its_gradient(method, backend):
    """The set that meets the tolerance first (in the forward to tolerance of the
    reference) gets a gradient that is not zero and is the implicit one (a method whose
    taped steps honoured the tolerance gave it zero)."""
    got, reference = _run(method, backend), _run(method, None)
    steps = np.asarray(reference["stats"].num_steps)
    assert steps.min() < steps.max()  # one set did stop first
    early = got["ids"] == np.argmin(steps)
    assert np.linalg.norm(got["grad_x"][early]) > 0
    error = relative_error(got["grad_x"][early], reference["grad_x"][early])
    assert error < _tolerance(method, backend)


def test_every_method_and_backend_is_in_the_tables():
    """The tables cover every public method and backend of `solvers`."""
    backends = {name for name in dir(solvers) if _subclass(name, solvers.AbstractBackend)}
    methods = {name for name in dir(solvers) if _subclass(name, solvers.AbstractMethod)}
    case = MATRIX_METHODS["newton"]
    assert backends == {type(b.converged(case)).__name__ for b in MATRIX_BACKENDS.values()}
    covered = {type(case.method()).__name__ for case in MATRIX_METHODS.values()}
    assert methods == covered


def _subclass(name: str, base: type) -> bool:
    value = getattr(solvers, name)
    return isinstance(value, type) and issubclass(value, base) and not name.startswith("Abstract")


def test_a_bare_backend_runs_each_layers_own_method():
    """No `method=`: Nesterov under Unrolled and Newton under Implicit for a learned energy,
    CoordinateNewton for an analytic one, Sinkhorn for the transport layers."""
    key = jax.random.key(0)
    neural = eqx_agg.energies.Neural(3, 3, (8,), key=key)
    expected = [
        (eqx_agg.EquilibriumAggregation(neural, solvers.Unrolled(5)), solvers.Nesterov),
        (eqx_agg.EquilibriumAggregation(neural, solvers.Implicit()), solvers.Newton),
        (eqx_agg.EquilibriumAggregation(neural, solvers.Phantom()), solvers.Newton),
        (eqx_agg.EquilibriumAggregation(eqx_agg.energies.Median(), solvers.Unrolled(5)),
         solvers.CoordinateNewton),
        (eqx_agg.OTKE(3, 2, solver=solvers.Implicit(), key=key), solvers.Sinkhorn),
        (eqx_agg.ROTP(3, solver=solvers.Checkpointed(20), key=key), solvers.Sinkhorn),
    ]  # fmt: skip
    for layer, method in expected:
        assert type(layer.solver.method) is method
    otke = eqx_agg.OTKE(3, 2, solver=solvers.Implicit(), key=key)
    assert otke.solve(random_set(0, 5, 3)).stats.converged

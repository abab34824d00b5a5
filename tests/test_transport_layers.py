"""The transport layers OTKE and ROTP: special cases, invariances for drawn values and
gradients under every backend, `vmap` and `segments` (eqx_agg.testing), an ott-jax oracle,
and bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

import eqx_agg
import solvers
from eqx_agg import testing

from .helpers import BACKENDS, make_backend, random_set

D = 3
SCALES = (0.1, 1.0, 3.0)
"""Scales of drawn sets: the transport plans of larger ones (costs over `eps = 0.1` in the
hundreds) take Sinkhorn thousands of steps."""


def _backends(**options) -> dict[str, solvers.AbstractBackend]:
    """Every backend, bare (the layers run Sinkhorn under each): 300 steps, 100 of them taped
    (Truncated: the last; Phantom: from the solution)."""
    return {name: make_backend(name, 300, k=100, **options) for name in BACKENDS}


SOLVERS = _backends()
REPORTING = _backends(throw=False)
"""Backends that report rather than raise a drawn set whose Sinkhorn does not converge in 300
steps: the checks compare a set's value with itself (permuted, padded, in a batch),
converged or not."""


def make_layer(name: str, solver=None, **kwargs):
    key = jax.random.key(0)
    if name == "otke":
        return eqx_agg.OTKE(D, 3, heads=2, solver=solver, key=key, **kwargs)
    if name == "otke-position":
        return eqx_agg.OTKE(D, 3, position_encoding="gaussian", sigma=0.5, solver=solver, key=key)
    return eqx_agg.ROTP(D, prior=name.removeprefix("rotp-"), solver=solver, key=key, **kwargs)


LAYERS = ["otke", "rotp-uniform", "rotp-attention"]


def test_otke_with_one_reference_point_is_mean_pooling():
    """One reference point of mass 1: the plan is forced to `1/n` per element."""
    x, mask = random_set(0, 9, D), jnp.arange(9) < 6
    for heads in [1, 3]:
        layer = eqx_agg.OTKE(D, 1, heads=heads, key=jax.random.key(heads))
        np.testing.assert_allclose(
            np.asarray(layer(x, mask)).reshape(heads, D), np.tile(x[:6].mean(0), (heads, 1)),
            rtol=1e-12,
        )  # fmt: skip


def test_otke_is_the_plan_weighted_average_of_ott_jaxs_plan():
    layer = eqx_agg.OTKE(D, 4, eps=0.5, solver=SOLVERS["implicit"], key=jax.random.key(1))
    x = random_set(1, 6, D)
    cost = -x @ layer.reference[0].T
    geom = geometry.Geometry(cost_matrix=cost, epsilon=0.5)
    problem = linear_problem.LinearProblem(geom, jnp.full(6, 4 / 6), jnp.ones(4))
    plan = ott_sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=10_000)(problem).matrix
    np.testing.assert_allclose(layer(x), (plan.T @ x).ravel(), atol=1e-9)


@pytest.mark.parametrize("prior", ["uniform", "attention"])
def test_rotp_with_large_weights_is_mean_or_attention_pooling(prior):
    """`a2, a3 ≫ a1 ≫ |x|`: the entropy makes `T` flat, the penalties enforce both priors,
    so `T → q0 p0ᵀ` and `f = Σ_n q0_n x_n`; the error shrinks like `|x| / a1` (while
    `a1 / a2` stays negligible)."""
    x, mask = random_set(2, 9, D), jnp.arange(9) < 7
    errors = []
    for a1 in [1e2, 1e3]:
        layer = make_layer(f"rotp-{prior}", SOLVERS["implicit"], a1=a1, a2=1e9, a3=1e9)
        weights = jnp.full(7, 1 / 7)
        if prior == "attention":
            weights = jax.nn.softmax(jnp.tanh(jax.vmap(layer.attention)(x[:7])) @ layer.query)
        errors.append(float(jnp.max(jnp.abs(layer(x, mask) - weights @ x[:7]))))
    assert errors[1] < 1e-3 and errors[1] < 0.2 * errors[0]


def test_rotp_max_pooling_limit():
    """`a1, a3 → 0` with `a2` large: each dimension's mass `1/d` goes to its largest element
    (the sample marginal is free), so `f_d = max_n x_nd`."""
    x, mask = random_set(3, 9, D), jnp.arange(9) < 7
    solver = solvers.Implicit(steps=3000, method=solvers.Sinkhorn())
    errors = []
    for a in [1e-1, 1e-2]:
        layer = make_layer("rotp-uniform", solver, a1=a, a2=1e6, a3=a)
        errors.append(float(jnp.max(jnp.abs(layer(x, mask) - x[:7].max(0)))))
    assert errors[1] < 1e-4 and errors[1] < 0.01 * errors[0]


@pytest.mark.parametrize("name", [*LAYERS, "otke-position"])
@pytest.mark.parametrize("backend", list(SOLVERS))
@given(drawn=testing.sets(D, min_size=2, scales=SCALES, dtypes=(np.float64,)))
def test_permutation_and_padding_invariance(name, backend, drawn):
    """Padding rows (NaN, inf, huge) change nothing and get no gradient; permuting a set
    changes nothing, except under the position encoding, which is defined by the order.
    The same procedure on the same set: to rounding (`atol=0`)."""
    layer = make_layer(name, REPORTING[backend])
    testing.check_padding_invariance(layer, *drawn, atol=0.0)
    if name != "otke-position":
        testing.check_permutation_invariance(layer, *drawn, atol=0.0)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("backend", list(SOLVERS))
def test_gradients(name, backend):
    """Gradients w.r.t. the inputs and the layer's parameters (the reference, the ROTP
    weights and attention prior), float64: exact backends against central finite
    differences; Truncated and Phantom, whose 100 taped Sinkhorn steps from (near) the
    solution approximate it, against the converged implicit gradient, to 1e-5."""
    x, mask = random_set(4, 6, D), jnp.arange(6) < 5
    error = testing.check_gradient(make_layer(name, SOLVERS[backend]), x, mask, parameters=True)
    assert error.exact == (backend not in ["truncated", "phantom"])
    assert max(error.x, error.parameters) < 1e-5


@pytest.mark.parametrize("name", LAYERS)
def test_implicit_equals_unrolled_at_convergence_and_truncated_k_t_is_unrolled(name):
    """Values and gradients (w.r.t. the inputs and the parameters) of Implicit and of 400
    unrolled steps agree to 1e-7 at convergence; Truncated with `k = T` is Unrolled
    exactly, converged or not."""
    layer, x = make_layer(name), random_set(5, 8, D)
    testing.check_backends_agree(
        layer, x, backends=[solvers.Unrolled(400), solvers.Implicit()], rtol=1e-7
    )
    testing.check_backends_agree(
        layer, x, backends=[solvers.Unrolled(3), solvers.Truncated(3, k=3)], rtol=0.0, atol=0.0
    )


@pytest.mark.parametrize("name", LAYERS)
@given(drawn=testing.segmented_sets(D, scales=SCALES, offsets=(0.0, 3.0), dtypes=(np.float64,)))
def test_vmap_and_segments_agree_with_single_calls(name, drawn):
    """Values to rounding, gradients to `10 √eps`, for sets of different sizes and scales
    (empty ones included), stored together in any order; an empty set gives zeros."""
    layer = make_layer(name, REPORTING["implicit"])
    testing.check_batch_independence(layer, *drawn, atol=0.0)
    sizes = np.bincount(drawn.segment_ids[drawn.mask], minlength=drawn.num_segments)
    pooled = layer.segments(drawn.x, drawn.segment_ids, drawn.num_segments, drawn.mask)
    assert np.all(np.asarray(pooled)[sizes == 0] == 0)


@pytest.mark.parametrize("name", LAYERS)
def test_bad_input(name, without_runtime_checks):
    layer = make_layer(name, SOLVERS["implicit"])
    with pytest.raises(ValueError, match=r"shape \[n, d\]"):
        layer(jnp.ones(D))
    with pytest.raises(ValueError, match=f"built for elements of size {D}"):
        layer(jnp.ones((4, D + 1)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="NaN or inf"):
        layer(random_set(0, 4, D).at[1, 0].set(jnp.nan))
    with pytest.raises(eqx.EquinoxRuntimeError, match="segment_ids"):
        layer.segments(random_set(0, 4, D), jnp.array([0, 1, 2, 0]), 2)


@pytest.mark.parametrize(
    "make",
    [
        lambda: eqx_agg.OTKE(D, 0, key=jax.random.key(0)),
        lambda: eqx_agg.OTKE(D, 2, eps=0.0, key=jax.random.key(0)),
        lambda: eqx_agg.OTKE(D, 2, position_encoding="sine", key=jax.random.key(0)),
        lambda: eqx_agg.OTKE(
            D, 2, solver=solvers.Implicit(method=solvers.CoordinateNewton()), key=jax.random.key(0)
        ),
        lambda: eqx_agg.ROTP(D, a1=0.0, key=jax.random.key(0)),
        lambda: eqx_agg.ROTP(D, prior="max", key=jax.random.key(0)),
    ],
)
def test_bad_hyperparameters_raise(make):
    with pytest.raises(ValueError):
        make()


def test_otke_default_solver_is_the_authors_ten_unrolled_iterations():
    layer = eqx_agg.OTKE(D, 3, key=jax.random.key(0))
    assert isinstance(layer.solver, solvers.Unrolled) and layer.solver.steps == 10
    assert eqx_agg.ROTP(D, key=jax.random.key(0)).solver.steps == 4

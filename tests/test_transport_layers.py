"""The transport layers OTKE and ROTP: special cases, invariances for drawn values, every
backend, transformations, an ott-jax oracle, and bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from jax.test_util import check_grads
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

import eqx_agg
import solvers

from .helpers import MAX_SET, masked, random_set, relative_error, set_values

D = 3
SOLVERS = {
    "unrolled": lambda: solvers.Unrolled(300, method=solvers.Sinkhorn()),
    "implicit": lambda: solvers.Implicit(method=solvers.Sinkhorn()),
    "truncated": lambda: solvers.Truncated(300, k=100, method=solvers.Sinkhorn()),
}


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
    layer = eqx_agg.OTKE(D, 4, eps=0.5, solver=SOLVERS["implicit"](), key=jax.random.key(1))
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
        layer = make_layer(f"rotp-{prior}", SOLVERS["implicit"](), a1=a1, a2=1e9, a3=1e9)
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
@given(drawn=set_values(d=D, scales=[0.1, 1.0, 3.0]))
def test_permutation_and_padding_invariance(name, backend, drawn):
    """Padding rows (NaN, inf, huge) change nothing; permuting a set changes nothing, except
    under the position encoding, which is defined by the order."""
    x, n = drawn
    layer = make_layer(name, SOLVERS[backend]())
    x, mask = masked(x, n)
    value = layer(x, mask)
    garbage = jnp.tile(jnp.array([jnp.nan, jnp.inf, -1e30]), MAX_SET)[:, None] * jnp.ones(D)
    padded = layer(jnp.concatenate([x, garbage]), jnp.concatenate([mask, jnp.zeros(90, bool)]))
    np.testing.assert_allclose(padded, value, rtol=1e-9, atol=1e-12)
    if name != "otke-position":
        perm = np.random.default_rng(n).permutation(MAX_SET)
        np.testing.assert_allclose(layer(x[perm], mask[perm]), value, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("backend", list(SOLVERS))
def test_check_grads(name, backend):
    """Gradients w.r.t. the inputs and the layer's parameters (the reference, the ROTP
    weights and attention prior) against central finite differences, float64."""
    layer = make_layer(name, SOLVERS[backend]())
    params, static = eqx.partition(layer, eqx.is_inexact_array)
    x, mask = random_set(4, 6, D), jnp.arange(6) < 5

    def f(x, params):
        return jnp.sum(jnp.sin(eqx.combine(params, static)(x, mask)))

    check_grads(f, (x, params), order=1, modes=["rev"], eps=1e-6, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", LAYERS)
def test_implicit_equals_unrolled_at_convergence_and_truncated_k_t_is_unrolled(name):
    x = random_set(5, 8, D)

    def grads(solver):
        layer = make_layer(name, solver)
        g_layer, g_x = eqx.filter_grad(lambda both: jnp.sum(jnp.sin(both[0](both[1]))))((layer, x))
        return np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(g_layer)] +
                              [np.ravel(g_x)])  # fmt: skip

    method = solvers.Sinkhorn()
    unrolled = grads(solvers.Unrolled(400, method=method))
    assert relative_error(grads(solvers.Implicit(method=method)), unrolled) < 1e-7
    short = grads(solvers.Unrolled(3, method=method))
    np.testing.assert_array_equal(grads(solvers.Truncated(3, k=3, method=method)), short)


@pytest.mark.parametrize("name", LAYERS)
def test_jit_vmap_and_segments_agree_with_single_calls(name):
    layer = make_layer(name, SOLVERS["implicit"]())
    sizes = [4, 1, 6, 0]
    xs = [
        random_set(i, n, D, scale)
        for i, (n, scale) in enumerate(zip(sizes, [1, 3, 0.1, 1], strict=True))
    ]
    padded = jnp.stack([jnp.pad(x, ((0, 6 - len(x)), (0, 0))) for x in xs])
    masks = jnp.arange(6)[None] < jnp.array(sizes)[:, None]
    singles = jnp.stack([layer(x) if len(x) else jnp.zeros(layer(xs[0]).shape) for x in xs])
    np.testing.assert_allclose(jax.jit(jax.vmap(layer))(padded, masks), singles, atol=1e-10)
    ids = jnp.repeat(jnp.arange(4), jnp.array(sizes), total_repeat_length=sum(sizes))
    np.testing.assert_allclose(layer.segments(jnp.concatenate(xs), ids, 4), singles, atol=1e-10)
    assert np.all(np.asarray(singles[3]) == 0)  # the empty set


@pytest.mark.parametrize("name", LAYERS)
def test_bad_input(name, without_runtime_checks):
    layer = make_layer(name, SOLVERS["implicit"]())
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

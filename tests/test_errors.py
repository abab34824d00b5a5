"""Bad input: clear errors at trace time for shapes and hyperparameters, detection at run
time for values."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

import eqx_agg
import solvers

from .helpers import BACKENDS, make_backend, neural_layer, random_set


def _layer(solver=None):
    return neural_layer(solver or solvers.Unrolled(steps=5))


def _re(shape):
    return "shape " + str(shape).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("shape", [(3,), (2, 4, 3), ()])
def test_wrong_rank_names_the_shape(shape, without_runtime_checks):
    with pytest.raises(ValueError, match=_re(shape)):
        _layer()(jnp.ones(shape))


@pytest.mark.parametrize("shape", [(3,), (2, 4, 3)])
def test_runtime_shape_checks_reject_the_wrong_rank(shape):
    """The public signatures carry real shapes (`Float[Array, "n d"]`) for jaxtyping."""
    with pytest.raises(jaxtyping.TypeCheckError, match="n d"):
        _layer()(jnp.ones(shape))
    with pytest.raises(jaxtyping.TypeCheckError):
        _layer()(jnp.ones((5, 3)), jnp.ones(4, bool))  # n = 5 against n = 4


def test_mismatched_feature_size_names_both_sizes():
    with pytest.raises(ValueError, match="built for elements of size 3, got elements of size 4"):
        _layer()(jnp.ones((5, 4)))
    layer = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Attention(2, key=jax.random.key(0)))
    with pytest.raises(ValueError, match="size 2, got elements of size 3"):
        layer(jnp.ones((5, 3)))


def test_bad_mask_and_segment_ids_name_the_shapes(without_runtime_checks):
    x = jnp.ones((5, 3))
    with pytest.raises(ValueError, match=r"mask must have shape \(5,\) .* got shape \(4,\)"):
        _layer()(x, jnp.ones(4, bool))
    with pytest.raises(TypeError, match="mask"):
        _layer()(x, jnp.ones(5))
    with pytest.raises(ValueError, match=r"segment_ids must have shape \(5,\) .* shape \(3,\)"):
        _layer().segments(x, jnp.zeros(3, int), 2)
    with pytest.raises(TypeError, match="segment_ids"):
        _layer().segments(x, jnp.zeros(5), 2)
    with pytest.raises(ValueError, match="num_segments must be at least 1"):
        _layer().segments(x, jnp.zeros(5, int), 0)


@pytest.mark.parametrize(
    "pool",
    [
        lambda: _layer(),
        lambda: eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean()),
        lambda: eqx_agg.pooling.Sum(),
        lambda: eqx_agg.pooling.MultiHeadAttention(3, 4, key=jax.random.key(0)),
    ],
)
def test_out_of_range_segment_ids_raise(pool):
    """An id >= num_segments (or < 0) used to drop its row silently."""
    x = random_set(0, 5, 3)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"segment_ids .* \[0, num_segments = 2\)"):
        pool().segments(x, jnp.array([0, 1, 2, 0, 1]), 2)
    with pytest.raises((eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError), match="segment_"):
        jax.jit(lambda ids: pool().segments(x, ids, 2))(jnp.array([0, -1, 1, 0, 1]))
    # a masked row's id is never used, so any value is fine there
    mask = jnp.array([True, True, False, True, True])
    pool().segments(x, jnp.array([0, 1, 7, 0, 1]), 2, mask)


@pytest.mark.parametrize(
    "make",
    [
        lambda: solvers.Unrolled(steps=0),
        lambda: solvers.Unrolled(lr=0.0),
        lambda: solvers.Implicit(momentum=1.0),
        lambda: solvers.Implicit(linear_solver="qr"),
        lambda: solvers.Implicit(ridge=-1.0),
        lambda: solvers.Implicit(tol=0.0),
        lambda: solvers.Implicit(maxiter=0),
        lambda: solvers.Truncated(steps=5, k=6),
        lambda: solvers.Truncated(steps=5, k=0),
        lambda: solvers.Unrolled(gtol=-1.0),
        lambda: solvers.Unrolled(clip=0.0),
        lambda: solvers.Unrolled(lr=0.5, method=solvers.CoordinateNewton()),
        lambda: solvers.CoordinateNewton(rtol=2.0),
        lambda: eqx_agg.energies.Median(smoothing=0.0),
        lambda: eqx_agg.energies.Max(smoothing=-1.0),
        lambda: eqx_agg.energies.Median(relative_smoothing=1.5),
        lambda: eqx_agg.energies.Neural(2, 2, regularisation=0.0, key=jax.random.key(0)),
        lambda: eqx_agg.energies.Neural(2, 2, min_regularisation=-0.1, key=jax.random.key(0)),
        lambda: eqx_agg.energies.Neural(2, 2, key=jax.random.key(0)).with_min_regularisation(-1),
        lambda: eqx_agg.energies.Neural(2, 2, key=jax.random.key(0)).with_min_regularisation(0.2),
    ],
)
def test_bad_hyperparameters_raise(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: solvers.Unrolled(steps=2.5),
        lambda: solvers.Implicit(steps=True),
        lambda: solvers.Truncated(steps="10"),
        lambda: solvers.Truncated(steps=10, k=2.0),
        lambda: solvers.Implicit(maxiter=10.5),
        lambda: solvers.Unrolled(method=object()),
    ],
)
def test_steps_and_k_must_be_ints(make):
    with pytest.raises(TypeError):
        make()


def test_numpy_integers_are_accepted_as_steps(without_runtime_checks):
    assert solvers.Truncated(steps=np.int64(6), k=np.int32(2)).k == 2


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_non_finite_input_is_detected(bad):
    x = random_set(0, 5, 3).at[2, 1].set(bad)
    with pytest.raises(eqx.EquinoxRuntimeError, match="NaN or inf in an unmasked row"):
        _layer()(x)
    # Under an outer jit the error surfaces through XLA's runtime error.
    with pytest.raises((eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError), match="NaN or inf"):
        jax.jit(jax.vmap(_layer()))(jnp.stack([x, x]))
    masked = _layer()(x, jnp.arange(5) != 2)
    np.testing.assert_allclose(masked, _layer()(jnp.delete(x, 2, axis=0)), rtol=1e-12)


def test_non_finite_input_without_throw_is_reported_as_divergence():
    x = random_set(0, 5, 3).at[2, 1].set(jnp.nan)
    sol = _layer(solvers.Unrolled(steps=5, throw=False)).solve(x)
    assert sol.stats.diverged and not sol.stats.converged
    assert sol.stats.num_steps == 0  # stopped at y0 when its gradient was not finite


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("energy_name", ["mean", "neural"])
def test_empty_set_returns_y0_with_finite_gradients(backend, energy_name):
    energy = (
        eqx_agg.energies.Mean()
        if energy_name == "mean"
        else eqx_agg.energies.Neural(3, 2, widths=(8,), key=jax.random.key(0))
    )
    layer = eqx_agg.EquilibriumAggregation(energy, make_backend(backend, steps=6))
    x, mask = random_set(2, 4, 3), jnp.zeros(4, bool)
    value = layer(x, mask)
    np.testing.assert_array_equal(value, jnp.zeros_like(value))
    grads, g_x = eqx.filter_grad(lambda both: jnp.sum(both[0](both[1], mask)))((layer, x))
    assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    np.testing.assert_array_equal(g_x, jnp.zeros_like(x))


def test_empty_set_with_the_default_solvers():
    for energy in [eqx_agg.energies.Median(), eqx_agg.energies.Max(),
                   eqx_agg.energies.Attention(3, key=jax.random.key(0))]:  # fmt: skip
        layer = eqx_agg.EquilibriumAggregation(energy)
        np.testing.assert_array_equal(layer(random_set(2, 4, 3), jnp.zeros(4, bool)), 0)


@pytest.mark.parametrize(
    "solver, match",
    [
        (solvers.Unrolled, r"got the class solvers.Unrolled: call it, e.g. solvers.Unrolled\(\)"),
        ("unrolled", r"backend value such as solvers.Unrolled\(steps=10\)"),
        (solvers.Newton(), r"got the forward method Newton: pass it to a backend"),
        (object(), "backend value"),
    ],
)
def test_a_non_backend_where_a_backend_belongs_says_what_to_pass(
    solver, match, without_runtime_checks
):
    """A backend class once said the energy "is not separable"; a string raised an
    AttributeError."""
    energy = eqx_agg.energies.Neural(3, 3, (8,), key=jax.random.key(0))
    with pytest.raises(TypeError, match=match):
        eqx_agg.EquilibriumAggregation(energy, solver)
    with pytest.raises(TypeError, match=match):
        eqx_agg.OTKE(3, 2, solver=solver, key=jax.random.key(0))


@pytest.mark.parametrize(
    "make",
    [
        lambda: eqx_agg.energies.Neural(0, 3, key=jax.random.key(0)),
        lambda: eqx_agg.energies.Neural(3, 0, key=jax.random.key(0)),
        lambda: eqx_agg.energies.Attention(0, key=jax.random.key(0)),
        lambda: eqx_agg.ROTP(0, key=jax.random.key(0)),
        lambda: eqx_agg.OTKE(3, 0, key=jax.random.key(0)),
    ],
)
def test_sizes_below_one_are_refused(make):
    with pytest.raises(ValueError, match="at least 1|must be positive"):
        make()


def quadratic_or_absolute(y, args):
    """Per set, `E = Σ_d (y_d - c_d)²/2` (weight 0) or `Σ_d |y_d - c_d|` (weight 1): the
    absolute value's gradient flips sign at the minimum, so Nesterov oscillates there with a
    residual of 1 that no step count lowers."""
    centre, weight = args
    quadratic = 0.5 * jnp.sum((y - centre) ** 2, axis=-1)
    return (1 - weight) * quadratic + weight * jnp.sum(jnp.abs(y - centre), axis=-1)


@pytest.mark.parametrize(
    "lr, absolute, expected, advice",
    [(0.001, 0.0, "still falling", "raise the"), (0.1, 1.0, "stopped falling", "lower the lr")],
    ids=["slow", "stalled"],
)
def test_non_convergence_says_which_sets_their_residual_and_what_helps(
    lr, absolute, expected, advice, capfd
):
    centre = jnp.array([[0.0, 0.0], [3.0, -2.0]])  # set 0 starts at its minimum
    weight = jnp.array([0.0, absolute])
    solver = solvers.Implicit(40, method=solvers.Nesterov(lr=lr, gtol=1e-8))
    with pytest.raises(eqx.EquinoxRuntimeError, match=expected) as error:
        solver.solve(quadratic_or_absolute, jnp.zeros((2, 2)), (centre, weight))
    assert advice in str(error.value) and "throw=False" in str(error.value)
    printed = capfd.readouterr().err
    assert "1 set(s) did not converge" in printed and "set 1: residual" in printed
    assert "set 0" not in printed


def test_sinkhorn_non_convergence_speaks_of_eps_and_its_tolerance_not_an_lr():
    layer = eqx_agg.OTKE(3, 4, eps=0.01, solver=solvers.Implicit(3), key=jax.random.key(0))
    with pytest.raises(eqx.EquinoxRuntimeError) as error:
        layer(random_set(0, 20, 3))
    message = str(error.value)
    assert "Sinkhorn" in message and "eps" in message and " lr" not in message

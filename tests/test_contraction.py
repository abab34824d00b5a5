"""The contraction penalty (a Jacobian regulariser): what it measures, where its gradient
goes, and what training an EA layer with it does to the forward."""

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

from .helpers import neural_layer, random_set


def _quadratic(y, args):
    """`½ yᵀAy − cᵀy` per set."""
    a, c = args
    return 0.5 * jnp.einsum("bi,bij,bj->b", y, a, y) - jnp.sum(c * y, axis=-1)


@given(
    seed=st.integers(0, 2**16),
    m=st.integers(1, 6),
    lr=st.floats(1e-3, 2.0),
    scale=st.sampled_from([1e-2, 1.0, 30.0]),
)
def test_on_a_quadratic_it_is_how_much_one_gradient_step_shrinks_the_residual(seed, m, lr, scale):
    rng = np.random.default_rng(seed)
    b = 3
    roots = rng.normal(size=(b, m, m))
    a = scale * (roots @ roots.transpose(0, 2, 1) + 0.1 * np.eye(m))
    c, y = rng.normal(size=(b, m)), rng.normal(size=(b, m))

    def residual(y):
        return np.einsum("bij,bj->bi", a, y) - c

    stepped = y - lr * residual(y)
    shrinkage = np.sum(residual(stepped) ** 2, -1) / np.sum(residual(y) ** 2, -1)
    measured = eqx_agg.contraction_penalty(_quadratic, jnp.asarray(y), (a, c), jnp.asarray(lr))
    np.testing.assert_allclose(measured, shrinkage, rtol=1e-8)


def test_it_is_zero_where_the_gradient_is_and_its_gradient_tunes_lr_not_y():
    curvature = 4.0
    a, c = jnp.full((2, 1, 1), curvature), jnp.zeros((2, 1))
    y = jnp.array([[0.0], [1.0]])  # the first set is at its minimum
    penalty = eqx_agg.contraction_penalty(_quadratic, y, (a, c), jnp.asarray(0.1))
    np.testing.assert_allclose(penalty, [0.0, (1 - 0.1 * curvature) ** 2])
    by_y = jax.grad(lambda y: jnp.sum(eqx_agg.contraction_penalty(_quadratic, y, (a, c), 0.1)))(y)
    np.testing.assert_array_equal(by_y, 0.0)

    def loss(lr):
        return jnp.sum(eqx_agg.contraction_penalty(_quadratic, y, (a, c), lr))

    lr = jnp.asarray(0.01)
    for _ in range(200):
        lr = lr - 0.01 * jax.grad(loss)(lr)
    np.testing.assert_allclose(lr, 1 / curvature, rtol=1e-6)  # one step then solves it


@pytest.mark.parametrize(
    "forward",
    [
        solvers.Unrolled(5, throw=False),
        solvers.Unrolled(5, method=solvers.Anderson(lr=0.1), throw=False),
    ],
    ids=["nesterov-learned-lr", "anderson-fixed-lr"],
)
def test_training_a_layer_with_it_makes_its_few_steps_solve_the_energy(forward):
    """A learned potential trained on its auxiliary loss, with and without a large
    contraction weight: on sets it was not trained on, the penalty falls only with it, and
    the forward's 5 steps leave a residual far below what eq. 5 alone gets, whether the
    forward's step size is learned too (Nesterov) or fixed (Anderson)."""
    train = jnp.stack([random_set(seed, 12, 3) for seed in range(8)])
    held_out = jnp.stack([random_set(seed, 12, 3) for seed in range(100, 108)])

    def held_out_stats(layer):
        """The median residual after the forward, and the mean penalty."""
        plain = jax.vmap(layer.with_contraction_weight(0.0).solve)(held_out)
        probed = jax.vmap(layer.with_contraction_weight(1.0).solve)(held_out)
        penalty = probed.stats.aux_loss - plain.stats.aux_loss
        return float(jnp.median(plain.stats.grad_max_norm)), float(jnp.mean(penalty))

    def trained(weight):
        layer = neural_layer(forward).with_contraction_weight(weight)
        optimizer = optax.adam(3e-3)

        @eqx.filter_jit
        def step(layer, state):
            def loss(layer):
                return jnp.mean(jax.vmap(layer.aggregate)(train)[1])

            updates, state = optimizer.update(eqx.filter_grad(loss)(layer), state)
            return eqx.apply_updates(layer, updates), state

        state = optimizer.init(eqx.filter(layer, eqx.is_array))
        for _ in range(150):
            layer, state = step(layer, state)
        return layer

    residual_before, penalty_before = held_out_stats(neural_layer(forward))
    residual_eq5, penalty_eq5 = held_out_stats(trained(0.0))
    residual, penalty = held_out_stats(trained(10.0))
    assert penalty < 0.2 * min(penalty_before, penalty_eq5)
    assert residual < 0.2 * min(residual_before, residual_eq5)


def _penalty_of(layer, x, segment_ids, num_segments, mask=None):
    """The layer's contraction penalty per set, read from its auxiliary loss."""
    on = layer.with_contraction_weight(1.0).solve_segments(x, segment_ids, num_segments, mask)
    off = layer.with_contraction_weight(0.0).solve_segments(x, segment_ids, num_segments, mask)
    return on.stats.aux_loss - off.stats.aux_loss


def test_its_gradient_reaches_the_energy_and_the_inputs():
    layer = neural_layer(solvers.Unrolled(8, method=solvers.Anderson(lr=0.1)))
    x, ids = random_set(0, 9, 3), jnp.array([0] * 4 + [1] * 5)

    def penalty(layer, x):
        return jnp.sum(_penalty_of(layer, x, ids, 2))

    by_energy = eqx.filter_grad(lambda layer: penalty(layer, x))(layer).energy
    by_x = jax.grad(lambda x: penalty(layer, x))(x)
    for part in jax.tree_util.tree_leaves(by_energy) + [by_x]:
        assert float(jnp.linalg.norm(part)) > 0


def test_padding_does_not_change_it_and_an_empty_set_has_none():
    layer = neural_layer(solvers.Checkpointed(5))
    x = random_set(1, 7, 3)
    ids = jnp.array([0, 0, 0, 2, 2, 2, 2])  # set 1 is empty
    penalty = _penalty_of(layer, x, ids, 3)
    padded = jnp.concatenate([x, jnp.full((3, 3), 1e30)])
    mask = jnp.arange(10) < 7
    penalty_padded = _penalty_of(
        layer, padded, jnp.concatenate([ids, jnp.array([0, 1, 2])]), 3, mask
    )
    assert penalty[1] == 0 and penalty[0] > 0 and penalty[2] > 0
    np.testing.assert_allclose(penalty_padded, penalty, rtol=1e-12)


def test_a_diverged_set_has_none_and_huge_gradients_do_not_overflow():
    def quadratic(y, curvature):
        return 0.5 * jnp.sum(curvature * y**2, axis=-1)

    y = jnp.array([[jnp.nan], [1e10]], jnp.float32)
    penalty = eqx_agg.contraction_penalty(quadratic, y, jnp.float32(1e25), jnp.float32(0.5e-25))
    assert penalty.dtype == jnp.float32  # |∇E|² = 1e70 overflows float32
    np.testing.assert_allclose(penalty, [0.0, 0.25], rtol=1e-5)
    by_curvature = jax.grad(
        lambda c: jnp.sum(eqx_agg.contraction_penalty(quadratic, y, c, jnp.float32(0.5e-25)))
    )(jnp.float32(1e25))
    assert np.isfinite(by_curvature)


def test_bad_weights_and_forwards_without_gradient_steps_are_errors_that_say_what_to_do():
    energy = eqx_agg.energies.Neural(3, 2, widths=(8,), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="contraction_weight must be >= 0"):
        eqx_agg.EquilibriumAggregation(energy, solvers.Unrolled(5), contraction_weight=-1.0)
    with pytest.raises(ValueError, match="Newton takes no gradient steps: use a solvers.Nesterov"):
        eqx_agg.EquilibriumAggregation(energy, solvers.Implicit(), contraction_weight=1.0)
    with pytest.raises(ValueError, match=r"Nesterov is projected \(clip\)"):
        eqx_agg.EquilibriumAggregation(
            energy, solvers.Unrolled(5, clip=3.0), contraction_weight=1.0
        )
    layer = eqx_agg.EquilibriumAggregation(energy, solvers.Unrolled(5), contraction_weight=1.0)
    with pytest.raises(ValueError, match=r"layer.with_contraction_weight\(0.0\)"):
        layer.with_solver(solvers.Implicit())
    exact = layer.with_contraction_weight(0.0).with_solver(solvers.Implicit())
    assert exact.solve(random_set(0, 5, 3)).stats.converged

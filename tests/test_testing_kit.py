"""eqx_agg.testing tested by planted bugs: each broken layer fails the right check within the
current profile's examples (8 at `ci`), with a message naming the property and the size of
the violation; the correct layers pass; bad input and vacuous input are refused."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, find, given, settings

import eqx_agg
import solvers
from eqx_agg import testing
from eqx_agg.energies import AbstractEnergy
from eqx_agg.pooling import AbstractPooling

D = 2


class RankWeighted(AbstractEnergy):
    """Planted bug: each element's potential `||x_i - y||² / r_i` is weighted by its rank
    `r_i` among the set's rows, so the argmin, a weighted mean, depends on their order."""

    scaled: bool = eqx.field(default=True, static=True)
    separable = True

    def prepare(self, x, segment_ids, num_segments, mask):
        return x, jnp.maximum(jnp.cumsum(mask), 1)  # one set: its elements' ranks

    def prepared_potential(self, element, y):
        x_i, rank = element
        return self.potential(x_i, y) / rank

    def potential(self, x_i, y):
        return jnp.sum((x_i - y) ** 2)

    def regulariser(self, y):
        return jnp.zeros((), y.dtype)

    def aggregate_size(self, in_size):
        return in_size


class MultipliedMask(AbstractPooling):
    """Planted bug: a mean that masks by multiplying, `Σ x_i m_i / Σ m_i`: a NaN or inf in
    a masked row reaches the value (`0 · inf = NaN`)."""

    def output_size(self, in_size):
        return in_size

    def _segments(self, x, segment_ids, num_segments, mask):
        weights = mask.astype(x.dtype)[:, None]
        total = jax.ops.segment_sum(x * weights, segment_ids, num_segments)
        return total / jnp.maximum(jax.ops.segment_sum(weights, segment_ids, num_segments), 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _mean_with_leaky_backward(x, segment_ids, num_segments, mask):
    weights = mask.astype(x.dtype)[:, None]
    total = jax.ops.segment_sum(jnp.where(mask[:, None], x, 0), segment_ids, num_segments)
    return total / jnp.maximum(jax.ops.segment_sum(weights, segment_ids, num_segments), 1)


def _forward(x, segment_ids, num_segments, mask):
    value = _mean_with_leaky_backward(x, segment_ids, num_segments, mask)
    return value, (segment_ids, mask)


def _backward(num_segments, residuals, cotangent):
    """The bug: the cotangent spread over every row of the set, the masked ones included."""
    segment_ids, mask = residuals
    counts = jax.ops.segment_sum(mask.astype(cotangent.dtype), segment_ids, num_segments)
    return (cotangent / jnp.maximum(counts, 1)[:, None])[segment_ids], None, None


_mean_with_leaky_backward.defvjp(_forward, _backward)


class LeakyBackward(AbstractPooling):
    """Planted bug: the right mean, but a hand-written backward pass that forgets the mask,
    so masked rows receive a gradient."""

    def output_size(self, in_size):
        return in_size

    def _segments(self, x, segment_ids, num_segments, mask):
        return _mean_with_leaky_backward(x, segment_ids, num_segments, mask)


class TenPercentOff(solvers.Unrolled):
    """Planted bug: Unrolled whose gradient is 1.1 times the true one (the value is right)."""

    def _iterate(self, method, fn, y0, args, bounds, optimality):
        state, history = super()._iterate(method, fn, y0, args, bounds, optimality)
        y = state.y + 0.1 * (state.y - jax.lax.stop_gradient(state.y))
        return eqx.tree_at(lambda s: s.y, state, y), history


class BatchAveragedRegulariser(AbstractPooling):
    """Planted bug, PyTorch Geometric's `EquilibriumAggregation`'s: the argmin of
    `Σ_i ||x_i - y||² / 2 + ||y||²` with the regulariser averaged over the batch, so a set's
    aggregate `Σ_i x_i / (n + 2 / num_segments)` depends on the sets pooled with it."""

    def output_size(self, in_size):
        return in_size

    def _segments(self, x, segment_ids, num_segments, mask):
        total = jax.ops.segment_sum(jnp.where(mask[:, None], x, 0), segment_ids, num_segments)
        counts = jax.ops.segment_sum(mask.astype(x.dtype), segment_ids, num_segments)
        return total / (counts + 2 / num_segments)[:, None]


SETS = testing.sets(D, min_size=2, max_size=8)
SEGMENTS = testing.segmented_sets(D, num_segments=3, max_size=8)
UNROLLED_MEAN = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean(), solvers.Unrolled(3))


def caught(check, layer, strategy, **options) -> testing.PropertyViolation:
    """The violation `check(layer, *drawn, **options)` raises on the first drawn example
    that shows one, among the current profile's `max_examples` (no shrinking)."""

    def fails(drawn) -> bool:
        try:
            check(layer, *drawn, **options)
        except testing.PropertyViolation:
            return True
        return False

    drawn = find(strategy, fails, settings=settings(phases=[Phase.generate], database=None))
    with pytest.raises(testing.PropertyViolation) as info:
        check(layer, *drawn, **options)
    return info.value


def assert_reported(violation: testing.PropertyViolation, name: str, at_least: float):
    """The message names the property, the measured error and the input."""
    assert violation.property_name == name and violation.error >= at_least
    message = str(violation)
    assert message.startswith(f"{name} violated by") and "unmasked rows" in message
    assert f"{violation.error:.3g}" in message, message


def test_an_order_dependent_energy_fails_permutation_invariance():
    layer = eqx_agg.EquilibriumAggregation(RankWeighted())
    violation = caught(testing.check_permutation_invariance, layer, SETS)
    assert_reported(violation, "permutation invariance", 1e-3)
    assert "rows in the order" in str(violation)


def test_masking_by_multiplying_fails_padding_invariance_on_the_value():
    violation = caught(testing.check_padding_invariance, MultipliedMask(), SETS)
    assert_reported(violation, "padding invariance", np.inf)
    assert "masked rows as given" in str(violation)


def test_a_backward_that_forgets_the_mask_fails_padding_invariance_on_the_gradient():
    violation = caught(testing.check_padding_invariance, LeakyBackward(), SETS)
    assert_reported(violation, "padding invariance", 1e-3)
    assert "masked rows receive a gradient" in str(violation)


def test_a_gradient_off_by_ten_percent_fails_gradient_correctness_and_agreement():
    layer = eqx_agg.EquilibriumAggregation(eqx_agg.energies.Mean(), TenPercentOff(3))
    violation = caught(testing.check_gradient, layer, SETS)
    assert_reported(violation, "gradient correctness", 0.09)
    assert violation.error < 0.11  # the gradient is 1.1 times the true one
    backends = [solvers.Unrolled(3), TenPercentOff(3)]
    violation = caught(testing.check_backends_agree, layer, SETS, backends=backends)
    assert_reported(violation, "agreement between backends", 0.09)
    assert "gradient w.r.t. x" in str(violation)


def test_a_batch_averaged_regulariser_fails_batch_independence():
    violation = caught(testing.check_batch_independence, BatchAveragedRegulariser(), SEGMENTS)
    assert_reported(violation, "batch independence", 1e-3)
    assert "in layer.segments" in str(violation)


@given(drawn=SETS)
def test_correct_layers_pass_every_check(drawn):
    """The planted bugs' correct counterparts: the error measured is rounding."""
    for layer in [UNROLLED_MEAN, eqx_agg.pooling.Mean()]:
        assert testing.check_permutation_invariance(layer, *drawn) < 1e-3
        assert testing.check_padding_invariance(layer, *drawn) < 1e-3
        assert testing.check_gradient(layer, *drawn).x < 1e-6
    backends = [solvers.Unrolled(3), solvers.Truncated(3, 3)]
    assert testing.check_backends_agree(UNROLLED_MEAN, *drawn, backends=backends) < 1e-3


@given(drawn=SEGMENTS)
def test_correct_layers_pass_batch_independence(drawn):
    for layer in [UNROLLED_MEAN, eqx_agg.pooling.Mean()]:
        assert testing.check_batch_independence(layer, *drawn) < 1e-3


def test_a_special_case_is_checked():
    x = np.arange(8.0).reshape(4, 2)
    assert testing.check_special_case(UNROLLED_MEAN, x, expected=lambda x: x.mean(0)) < 1e-12
    with pytest.raises(testing.PropertyViolation, match="special case 'median'.*relative 0.429"):
        testing.check_special_case(UNROLLED_MEAN, x, expected=lambda x: x[0], name="median")


CHECKS = {
    "permutation": testing.check_permutation_invariance,
    "padding": testing.check_padding_invariance,
    "gradient": testing.check_gradient,
    "special case": functools.partial(testing.check_special_case, expected=lambda x: x[0]),
    "agreement": functools.partial(
        testing.check_backends_agree, backends=[solvers.Unrolled(3), solvers.Unrolled(4)]
    ),
}


@pytest.mark.parametrize("check", CHECKS)
def test_bad_input_names_what_was_expected(check, without_runtime_checks):
    check, x = CHECKS[check], np.ones((4, D))
    with pytest.raises(TypeError, match="expected an eqx_agg.AbstractAggregation"):
        check(jnp.mean, x)
    with pytest.raises(ValueError, match=r"x must be one set of shape \[n, d\], got shape \(4,\)"):
        check(UNROLLED_MEAN, x[:, 0])
    with pytest.raises(ValueError, match=r"shape \[n, d\], got shape \(1, 4, 2\)"):
        check(UNROLLED_MEAN, x[None])
    with pytest.raises(TypeError, match="floating-point"):
        check(UNROLLED_MEAN, x.astype(int))
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        check(UNROLLED_MEAN, x, np.ones(3, bool))
    with pytest.raises(TypeError, match="mask must be a boolean"):
        check(UNROLLED_MEAN, x, np.ones(4))


def test_bad_input_to_the_other_checks_and_strategies(without_runtime_checks):
    x = np.arange(8.0).reshape(4, D)
    with pytest.raises(TypeError, match="expected an eqx_agg.AbstractSolvedAggregation"):
        testing.check_backends_agree(eqx_agg.pooling.Mean(), x, backends=[])
    with pytest.raises(TypeError, match="two or more solvers.AbstractBackend"):
        testing.check_backends_agree(UNROLLED_MEAN, x, backends=[solvers.Unrolled(3)])
    with pytest.raises(ValueError, match=r"segment_ids must be integers of shape \(4,\)"):
        testing.check_batch_independence(UNROLLED_MEAN, x, np.zeros(3, int), 2)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        testing.check_batch_independence(UNROLLED_MEAN, x, np.arange(4), 2)
    with pytest.raises(ValueError, match="need d >= 1"):
        testing.sets(0)
    with pytest.raises(ValueError, match="num_segments"):
        testing.segmented_sets(D, num_segments=0)


@pytest.mark.parametrize("check", CHECKS)
def test_an_empty_set_is_vacuous(check):
    with pytest.raises(testing.VacuousCheck, match="the set is empty"):
        CHECKS[check](UNROLLED_MEAN, np.ones((4, D)), np.zeros(4, bool))


def test_vacuous_inputs_are_refused():
    x = np.arange(8.0).reshape(4, D)
    with pytest.raises(testing.VacuousCheck, match="fewer than two distinct elements"):
        testing.check_permutation_invariance(UNROLLED_MEAN, np.ones((4, D)))
    with pytest.raises(testing.VacuousCheck, match="aggregate of the set is not finite"):
        testing.check_permutation_invariance(eqx_agg.pooling.Sum(), 1e308 * (1 + x / 10))
    with pytest.raises(testing.VacuousCheck, match="expected value is not finite"):
        testing.check_special_case(UNROLLED_MEAN, x, expected=lambda x: x.sum(0) * np.nan)
    with pytest.raises(testing.VacuousCheck, match="needs two sets or more"):
        testing.check_batch_independence(UNROLLED_MEAN, x, np.zeros(4, int), 1)
    with pytest.raises(testing.VacuousCheck, match="needs two sets or more"):
        testing.check_batch_independence(UNROLLED_MEAN, x, np.zeros(4, int), 2, np.zeros(4, bool))

"""The baseline poolings: agreement with numpy, permutation and padding invariance and
segments (eqx_agg.testing), empty sets and shape errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eqx_agg
from eqx_agg import pooling, testing

from .helpers import MAX_SET, random_set

NAMES = ["sum", "mean", "max", "attention", "pna"]


def make_pooling(name: str, d: int, key):
    """The library's factory, with a 2-head attention into 4 and PNA's δ = 1.7."""
    return eqx_agg.make_pooling(name, d, size=4, heads=2, pna_delta=1.7, key=key)


def numpy_pooling(name: str, pool, x: np.ndarray) -> np.ndarray:
    """The pooling written directly in numpy, one set at a time."""
    if name == "sum":
        return x.sum(0)
    if name == "mean":
        return x.mean(0)
    if name == "max":
        return x.max(0)
    if name == "attention":
        k = x @ np.asarray(pool.keys.weight).T + np.asarray(pool.keys.bias)
        v = x @ np.asarray(pool.values.weight).T + np.asarray(pool.values.bias)
        queries = np.asarray(pool.queries)
        heads, width = queries.shape
        out = []
        for h in range(heads):
            cols = slice(h * width, (h + 1) * width)
            logits = k[:, cols] @ queries[h] / np.sqrt(width)
            a = np.exp(logits - logits.max())
            out.append((a / a.sum()) @ v[:, cols])
        return np.concatenate(out)
    aggregates = np.concatenate(
        [x.mean(0), x.max(0), x.min(0), np.sqrt(np.maximum(x.var(0), 0) + pool.eps)]
    )
    amplification = np.log(len(x) + 1) / pool.delta
    return np.concatenate([aggregates, aggregates * amplification, aggregates / amplification])


# Few distinct shapes (each new shape recompiles every op), many values.
sizes = st.tuples(st.sampled_from([1, 7, MAX_SET]), st.sampled_from([1, 3]), st.integers(0, 10_000))


@pytest.mark.parametrize("name", NAMES)
@given(size=sizes)
def test_matches_numpy(name, size):
    n, d, seed = size
    pool = make_pooling(name, d, jax.random.PRNGKey(seed))
    x = random_set(seed, n, d)
    expected = numpy_pooling(name, pool, np.asarray(x))
    assert pool(x).shape == (pool.output_size(d),)
    np.testing.assert_allclose(np.asarray(pool(x)), expected, rtol=1e-9, atol=1e-12)


POOLS = {name: make_pooling(name, 2, jax.random.key(0)) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
@given(drawn=testing.sets(2, min_size=2))
def test_permutation_and_padding_invariance(name, drawn):
    """Drawn sets (eqx_agg.testing): permuting the rows changes nothing; masked rows of
    NaN, ±inf and 1e30, overwritten or appended, change nothing and get no gradient."""
    testing.check_permutation_invariance(POOLS[name], *drawn)
    testing.check_padding_invariance(POOLS[name], *drawn)


@pytest.mark.parametrize("name", NAMES)
@given(drawn=testing.segmented_sets(2, num_segments=4, max_size=8))
def test_segments_and_vmap_match_single_sets(name, drawn):
    """Sets of different sizes (empty ones included) and scales, stored interleaved: each
    set's value and the gradients are the same alone, in a `vmap` batch and in `segments`."""
    testing.check_batch_independence(POOLS[name], *drawn)


@pytest.mark.parametrize("name", NAMES)
def test_empty_set_is_zero_with_finite_gradients(name, getkey):
    d = 2
    pool = make_pooling(name, d, getkey())
    x = random_set(0, 3, d)
    mask = jnp.zeros(3, bool)
    np.testing.assert_array_equal(pool(x, mask=mask), np.zeros(pool.output_size(d)))
    grad = jax.grad(lambda x: jnp.sum(pool(x, mask=mask)))(x)
    assert np.all(np.isfinite(grad)) and np.all(grad == 0)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite_and_batchable(name, getkey):
    d = 2
    pool = make_pooling(name, d, getkey())
    xs = jnp.stack([random_set(i, 5, d) for i in range(3)])
    batched = jax.vmap(pool)(xs)
    np.testing.assert_allclose(batched[1], pool(xs[1]), rtol=1e-12)
    grad = jax.jit(jax.grad(lambda xs: jnp.sum(jax.vmap(pool)(xs) ** 2)))(xs)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes_raise(name, getkey, without_runtime_checks):
    pool = make_pooling(name, 2, getkey())
    x = random_set(0, 4, 2)
    with pytest.raises(ValueError, match=r"shape \[n, d\]"):
        pool(x[0])
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        pool(x, mask=jnp.ones(3, bool))
    with pytest.raises(ValueError, match=r"segment_ids must have shape \(4,\)"):
        pool.segments(x, jnp.zeros(3, jnp.int32), 1)
    with pytest.raises(ValueError, match="num_segments"):
        pool.segments(x, jnp.zeros(4, jnp.int32), 0)


def test_attention_checks_sizes(getkey):
    with pytest.raises(ValueError, match="divisor of out_size = 6"):
        pooling.MultiHeadAttention(2, 6, num_heads=4, key=getkey())
    pool = pooling.MultiHeadAttention(2, 8, key=getkey())
    with pytest.raises(ValueError, match="built for elements of size 2"):
        pool(random_set(0, 4, 3))
    with pytest.raises(ValueError, match="delta must be positive"):
        pooling.PNA(delta=0.0)


def test_reexported_from_package():
    assert eqx_agg.pooling.Sum is pooling.Sum
    assert issubclass(pooling.PNA, pooling.AbstractPooling)

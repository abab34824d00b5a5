"""Problem tables, value strategies and comparison helpers shared by the tests."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import eqx_agg
from benchmarks.shared.factories import BACKENDS as BACKENDS
from benchmarks.shared.factories import make_backend as make_backend

MAX_SET = 30
"""Sets drawn by hypothesis are padded to this many rows, so jit compiles once per shape."""

SCALES = [1e-3, 1e-2, 1.0, 1e2, 1e3]


def make_energy(name: str, d: int, key):
    """One energy of each kind, for elements of size `d` (defaults everywhere)."""
    return {
        "mean": lambda: eqx_agg.energies.Mean(),
        "sum": lambda: eqx_agg.energies.Sum(),
        "median": lambda: eqx_agg.energies.Median(),
        "max": lambda: eqx_agg.energies.Max(),
        "attention": lambda: eqx_agg.energies.Attention(d, key=key),
        "neural": lambda: eqx_agg.energies.Neural(d, 3, widths=(16, 8), key=key),
    }[name]()


ANALYTIC = ["mean", "sum", "median", "max", "attention"]


def neural_layer(solver, d: int = 3, seed: int = 0):
    """The small learned-potential layer most backend tests use (`d → 3`)."""
    energy = eqx_agg.energies.Neural(d, 3, widths=(16, 8), key=jax.random.PRNGKey(seed))
    return eqx_agg.EquilibriumAggregation(energy, solver)


def random_set(seed: int, n: int, d: int, scale: float = 1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=(n, d)))


@st.composite
def set_values(draw, d: int, min_size: int = 1, max_size: int = MAX_SET, scales=SCALES):
    """`(x, n)`: `n` drawn elements of size `d`, with ties and duplicates, at a drawn scale
    and offset, padded with garbage rows to `max_size` rows (the first `n` are real)."""
    n = draw(st.integers(min_size, max_size))
    level = st.sampled_from([-1.0, -0.5, 0.0, 0.25, 1.0])  # repeated values: ties
    element = st.one_of(level, st.floats(-1, 1, allow_nan=False, allow_infinity=False))
    values = draw(hnp.arrays(np.float64, (n, d), elements=element))
    scale = draw(st.sampled_from(scales))
    offset = draw(st.sampled_from([0.0, 3.0, -100.0]))
    x = np.full((max_size, d), 1e30)
    x[:n] = scale * (values + offset)
    return x, n


def masked(x: np.ndarray, n: int):
    """`x` as a jax array and the mask of its first `n` rows."""
    return jnp.asarray(x), jnp.arange(x.shape[0]) < n


def relative_error(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def flat(tree) -> np.ndarray:
    """Every array leaf of `tree`, flattened and concatenated."""
    leaves = jax.tree_util.tree_leaves(tree)
    return np.concatenate([np.zeros(0)] + [np.ravel(np.asarray(leaf)) for leaf in leaves])


def tree_allclose(a, b, rtol=1e-7, atol=1e-9) -> bool:
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    return tree_a == tree_b and all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )

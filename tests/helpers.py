"""Problem tables and comparison helpers shared by the tests."""

import math

import jax
import jax.numpy as jnp
import numpy as np

import eqx_agg
import solvers

MAX_SET = 30


def make_energy(name: str, d: int, key):
    """One energy of each kind, for elements of size `d`."""
    return {
        "mean": lambda: eqx_agg.energies.Mean(),
        "sum": lambda: eqx_agg.energies.Sum(),
        "median": lambda: eqx_agg.energies.Median(smoothing=0.1),
        "max": lambda: eqx_agg.energies.Max(smoothing=0.1),
        "attention": lambda: eqx_agg.energies.Attention(d, key=key),
        "neural": lambda: eqx_agg.energies.Neural(d, 3, widths=(16, 8), key=key),
    }[name]()


ENERGIES = ["mean", "sum", "median", "max", "attention", "neural"]


def stable_lr(name: str, n: int = MAX_SET) -> float:
    """Half the stability limit of each analytic energy's curvature at `n` elements."""
    log_n = math.log2(n + 1)
    curvature = {
        "mean": 2 * log_n,
        "sum": 1.0,
        "median": log_n / 0.1,
        "max": log_n / 0.4,
        "attention": 2 * math.exp(1.5) * log_n,
        "neural": 8.0,
    }[name]
    return min(0.125, 0.5 * solvers.max_stable_lr(curvature))


def make_backend(name: str, steps: int, lr: float = 0.125, **kwargs):
    return {
        "unrolled": lambda: solvers.Unrolled(steps=steps, lr=lr, **kwargs),
        "implicit": lambda: solvers.Implicit(steps=steps, lr=lr, **kwargs),
        "truncated": lambda: solvers.Truncated(steps=steps, k=max(1, steps // 4), lr=lr, **kwargs),
    }[name]()


BACKENDS = ["unrolled", "implicit", "truncated"]


def random_set(seed: int, n: int, d: int, scale: float = 1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=(n, d)))


def padded_set(seed: int, n: int, d: int):
    """`n` random elements padded with garbage rows to `MAX_SET`, and the mask that removes
    them: one array shape per `d`, so jit compiles once per `d`, not per example."""
    x = np.random.default_rng(seed).normal(size=(MAX_SET, d))
    x[n:] = 1e3
    return jnp.asarray(x), jnp.arange(MAX_SET) < n


def attention_lr(energy, x, mask) -> float:
    """Half the stability limit of the Attention energy on this set (curvature
    `2 max(mean_i w_i, 1) log2(N + 1)`, `w_i = exp(hᵀx_i)`)."""
    n = int(np.sum(mask))
    weights = np.exp(np.asarray(x)[np.asarray(mask)] @ np.asarray(energy.query))
    curvature = 2 * max(float(np.mean(weights)), 1.0) * math.log2(n + 1)
    return 0.5 * solvers.max_stable_lr(curvature)


def tree_allclose(a, b, rtol=1e-7, atol=1e-9) -> bool:
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    return tree_a == tree_b and all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )

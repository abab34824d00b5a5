"""The per-set linear solvers of Implicit's backward pass: each set to its own tolerance,
bounded, with breakdowns detected."""

import jax.numpy as jnp
import numpy as np
import pytest

from solvers import _linear_solve

SCALES = np.array([1e-8, 1.0, 1e8, 3e-3])


def blocks(seed: int, n: int, symmetric: bool, condition: float = 10.0) -> np.ndarray:
    """Four `n × n` blocks with eigenvalues (or singular values) in `[1, condition]`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in SCALES:
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        spectrum = np.geomspace(1, condition, n)
        if symmetric:
            out.append(q @ np.diag(spectrum) @ q.T)
        else:
            p, _ = np.linalg.qr(rng.normal(size=(n, n)))
            out.append(q @ np.diag(spectrum) @ p.T)
    return np.stack(out)


def operator(a: np.ndarray):
    a = jnp.asarray(a)
    return lambda v: jnp.einsum("bij,bj->bi", a, v)


@pytest.mark.parametrize(
    "name, symmetric",
    [("cg", True), ("normal_cg", False), ("gmres", False), ("lu", False)],
)
@pytest.mark.parametrize("n", [1, 7, 40])
def test_each_set_meets_its_own_tolerance(name, symmetric, n):
    """Right-hand sides 1e16 apart in size: the small one is solved as well as the large."""
    a = blocks(n, n, symmetric)
    rhs = np.random.default_rng(1).normal(size=(len(SCALES), n)) * SCALES[:, None]
    x, stats = _linear_solve.SOLVERS[name](operator(a), jnp.asarray(rhs), 1e-10, 200)
    expected = np.linalg.solve(a, rhs[..., None])[..., 0]
    error = np.linalg.norm(np.asarray(x) - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert np.all(error < 1e-7), error
    assert not stats.failed.any() and np.all(np.asarray(stats.residual) < 1e-9)


def test_cg_stops_each_set_at_its_own_iteration():
    a = np.stack([np.eye(6), np.diag(np.geomspace(1, 100, 6))])
    x, stats = _linear_solve.cg(operator(a), jnp.ones((2, 6)), 1e-10, 100)
    assert stats.iterations[0] == 1 and stats.iterations[1] == 6
    np.testing.assert_allclose(x[1], 1 / np.geomspace(1, 100, 6), rtol=1e-9)


def test_zero_right_hand_side_is_solved_by_zero():
    a = blocks(0, 5, True)
    rhs = np.random.default_rng(0).normal(size=(4, 5))
    rhs[2] = 0
    for name in ["cg", "normal_cg", "gmres", "lu"]:
        x, stats = _linear_solve.SOLVERS[name](operator(a), jnp.asarray(rhs), 1e-10, 100)
        np.testing.assert_array_equal(x[2], 0)
        assert not stats.failed.any()


def test_cg_flags_negative_curvature_in_that_set_only():
    a = blocks(0, 5, True)
    a[1] = np.diag([1.0, 2.0, -1.0, 3.0, 4.0])  # indefinite: not a minimum
    x, stats = _linear_solve.cg(operator(a), jnp.ones((4, 5)), 1e-10, 100)
    np.testing.assert_array_equal(stats.failed, [False, True, False, False])
    _, exact = _linear_solve.gmres(operator(a), jnp.ones((4, 5)), 1e-10, 100)
    assert not exact.failed.any()  # GMRES (and normal CG, LU) solve the indefinite block


def test_the_iteration_cap_is_reported_as_a_failure():
    a = blocks(0, 30, True, condition=1e4)
    x, stats = _linear_solve.cg(operator(a), jnp.ones((4, 30)), 1e-10, 5)
    assert np.all(np.asarray(stats.iterations) == 5) and stats.failed.all()


def test_diagonal_is_exact_on_diagonal_blocks():
    d = np.random.default_rng(0).uniform(0.1, 10, size=(4, 6)) * SCALES[:, None]
    rhs = np.ones((4, 6))
    x, stats = _linear_solve.diagonal(lambda v: jnp.asarray(d) * v, jnp.asarray(rhs), 1e-12, 1)
    np.testing.assert_allclose(x, rhs / d, rtol=1e-14)
    assert not stats.failed.any()

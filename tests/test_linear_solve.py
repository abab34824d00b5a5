"""Implicit's per-set linear solves on lineax: each set to its own tolerance, bounded, with
breakdowns detected, under outer transformations too."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import solvers
from solvers.linear import from_shortcut, solve_per_set

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


def shortcut(name: str, tol: float = 1e-10, maxiter: int = 200, size: int = 40):
    return from_shortcut(name, jnp.float64, tol, maxiter, size)


@pytest.mark.parametrize(
    "name, symmetric",
    [("cg", True), ("normal_cg", False), ("gmres", False), ("lu", False)],
)
@pytest.mark.parametrize("n", [1, 7, 40])
def test_each_set_meets_its_own_tolerance(name, symmetric, n):
    """Right-hand sides 1e16 apart in size: the small one is solved as well as the large."""
    a = blocks(n, n, symmetric)
    rhs = np.random.default_rng(1).normal(size=(len(SCALES), n)) * SCALES[:, None]
    x, stats = solve_per_set(operator(a), jnp.asarray(rhs), shortcut(name), symmetric=symmetric)
    expected = np.linalg.solve(a, rhs[..., None])[..., 0]
    error = np.linalg.norm(np.asarray(x) - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert np.all(error < 1e-7), error
    assert not stats.failed.any() and np.all(np.asarray(stats.residual) < 1e-8)


@pytest.mark.parametrize("name, symmetric", [("cg", True), ("gmres", False)])
def test_the_solve_differentiates_as_the_exact_inverse(name, symmetric):
    """`x = A(t)⁻¹ b(t)`: the reverse-mode derivative w.r.t. `t` (through both the operator's
    closed-over arrays and the right-hand side) is `jnp.linalg.solve`'s."""
    a, da = blocks(3, 5, symmetric), blocks(4, 5, symmetric)
    b = np.random.default_rng(5).normal(size=(len(SCALES), 5))
    weights = np.random.default_rng(6).normal(size=b.shape)

    def loss(t, solve):
        matrix, rhs = jnp.asarray(a) + t * jnp.asarray(da) / 20, jnp.sin(t) * jnp.asarray(b)
        return jnp.sum(weights * solve(matrix, rhs))

    def per_set(matrix, rhs):
        return solve_per_set(operator(matrix), rhs, shortcut(name), symmetric=symmetric)[0]

    def dense(matrix, rhs):
        return jnp.linalg.solve(matrix, rhs[..., None])[..., 0]

    for t in (0.3, 1.1):
        expected = jax.grad(loss)(t, dense)
        np.testing.assert_allclose(jax.grad(loss)(t, per_set), expected, rtol=1e-7)


def test_cg_stops_each_set_at_its_own_iteration():
    a = np.stack([np.eye(6), np.diag(np.geomspace(1, 100, 6))])
    x, stats = solve_per_set(operator(a), jnp.ones((2, 6)), shortcut("cg"))
    assert stats.iterations[0] == 1 and 6 <= stats.iterations[1] <= 7
    np.testing.assert_allclose(x[1], 1 / np.geomspace(1, 100, 6), rtol=1e-9)


def test_zero_right_hand_side_is_solved_by_zero():
    a = blocks(0, 5, True)
    rhs = np.random.default_rng(0).normal(size=(4, 5))
    rhs[2] = 0
    for name in ["cg", "normal_cg", "gmres", "lu"]:
        x, stats = solve_per_set(operator(a), jnp.asarray(rhs), shortcut(name))
        np.testing.assert_array_equal(x[2], 0)
        assert not stats.failed.any()


def test_cg_flags_negative_curvature_in_that_set_only():
    """A negative definite block: CG's solution has `xᵀ A x = xᵀ rhs < 0`, flagged as not a
    minimum; GMRES solves the same block and is not flagged."""
    a = blocks(0, 5, True)
    a[1] = -a[1]
    x, stats = solve_per_set(operator(a), jnp.ones((4, 5)), shortcut("cg"))
    np.testing.assert_array_equal(stats.failed, [False, True, False, False])
    _, exact = solve_per_set(operator(a), jnp.ones((4, 5)), shortcut("gmres"))
    assert not exact.failed.any()


def test_the_iteration_cap_is_reported_as_a_failure():
    a = blocks(0, 30, True, condition=1e4)
    x, stats = solve_per_set(operator(a), jnp.ones((4, 30)), shortcut("cg", maxiter=5))
    assert np.all(np.asarray(stats.iterations) == 5) and stats.failed.all()


def test_diagonal_is_exact_on_diagonal_blocks():
    d = np.random.default_rng(0).uniform(0.1, 10, size=(4, 6)) * SCALES[:, None]
    rhs = np.ones((4, 6))
    x, stats = solve_per_set(lambda v: jnp.asarray(d) * v, jnp.asarray(rhs), lx.Diagonal())
    np.testing.assert_allclose(x, rhs / d, rtol=1e-14)
    assert not stats.failed.any()


def test_the_jacobi_preconditioner_cuts_cg_iterations():
    """Blocks whose diagonal spans 1e4: preconditioned CG needs far fewer iterations for the
    same solution."""
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(4, 30, 30))
    a = np.stack([np.diag(np.geomspace(1, 1e4, 30)) + 0.01 * (m + m.T) for m in noise])
    rhs = jnp.asarray(rng.normal(size=(4, 30)))
    plain_x, plain = solve_per_set(operator(a), rhs, shortcut("cg"))
    diagonal = jnp.asarray(np.diagonal(a, axis1=1, axis2=2))
    pre_x, pre = solve_per_set(operator(a), rhs, shortcut("cg"), preconditioner=diagonal)
    np.testing.assert_allclose(pre_x, plain_x, rtol=1e-7, atol=1e-12)
    assert np.all(np.asarray(pre.iterations) < 0.5 * np.asarray(plain.iterations))


def test_outer_vmaps_solve_every_set():
    """Under `vmap`, with the operator batched or not, twice nested, the outer axes join the
    sets and every system is solved."""
    a = jnp.asarray(blocks(3, 4, True))
    rhs = jnp.asarray(np.random.default_rng(3).normal(size=(3, 2, 4, 4)))
    expected = np.linalg.solve(np.asarray(a), np.asarray(rhs)[..., None])[..., 0]

    def solve(a, r):
        return solve_per_set(lambda v: jnp.einsum("bij,bj->bi", a, v), r, shortcut("cg"))[0]

    np.testing.assert_allclose(jax.vmap(solve, (None, 0))(a, rhs[0]), expected[0], rtol=1e-8)
    nested = jax.vmap(jax.vmap(solve, (None, 0)), (None, 0))(a, rhs)
    np.testing.assert_allclose(nested, expected, rtol=1e-8)
    scaled = jax.vmap(solve, (0, 0))(jnp.stack([a, 2 * a]), rhs[0])
    np.testing.assert_allclose(scaled[1], expected[0, 1] / 2, rtol=1e-8)


def test_implicit_takes_a_lineax_solver_as_a_value(without_runtime_checks):
    solver = solvers.Implicit(linear_solver=lx.GMRES(rtol=1e-9, atol=1e-9))
    assert isinstance(solver.linear_solver, lx.GMRES)
    with pytest.raises(ValueError, match="lineax solver carries its own"):
        solvers.Implicit(linear_solver=lx.CG(rtol=1e-6, atol=1e-6), tol=1e-3)
    with pytest.raises(ValueError, match="linear_solver must be"):
        solvers.Implicit(linear_solver="qr")
    with pytest.raises(TypeError, match="lineax solver"):
        solvers.Implicit(linear_solver=np.linalg.solve)
    with pytest.raises(ValueError, match="preconditioner"):
        solvers.Implicit(preconditioner="ilu")

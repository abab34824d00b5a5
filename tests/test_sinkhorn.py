"""The Sinkhorn forward method on entropic transport problems: plans and implicit gradients
against ott-jax (an independent implementation), marginals at convergence (every backend:
the strategy matrix)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

import solvers

SIZES = [7, 5, 1]  # real rows of each problem (of n = 7)
N, P, EPS = 7, 4, 0.3
WEIGHTS = jnp.sin(jnp.arange(N * P).reshape(N, P))


def balanced(cost):
    """OTKE's marginals: rows `p / n` each over the real rows, columns 1."""
    mask = jnp.arange(N)[None] < jnp.array(SIZES)[:, None]
    rows = jnp.where(mask, P / mask.sum(1, keepdims=True), 0.0)
    return solvers.EntropicOT(cost, rows, jnp.ones((len(SIZES), P)), mask, jnp.asarray(EPS))


def plans(backend, problem):
    y0 = jnp.zeros((len(SIZES), N + P))
    sol = backend.solve(solvers.dual_energy, y0, problem, optimality=solvers.transport_optimality)
    return problem.plan(sol.value), sol.stats


def ott_plan(cost, i):
    k = SIZES[i]
    geom = geometry.Geometry(cost_matrix=cost[:k], epsilon=EPS)
    problem = linear_problem.LinearProblem(geom, jnp.full(k, P / k), jnp.ones(P))
    return ott_sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=10_000)(problem).matrix


def _cost():
    return jnp.asarray(np.random.default_rng(0).normal(size=(len(SIZES), N, P)))


@pytest.fixture
def cost():
    return _cost()


@pytest.fixture(scope="module")
def oracle():
    """ott-jax's plan of each problem and, for the first two, its gradient w.r.t. the cost
    (computed once: every backend is compared with the same)."""
    cost = _cost()
    plans = [np.asarray(jax.jit(ott_plan, static_argnums=1)(cost[i], i)) for i in range(3)]
    grads = [
        np.asarray(jax.jit(jax.grad(lambda c, i=i, k=k: jnp.sum(ott_plan(c, i) * WEIGHTS[:k])))(
            cost[i]
        ))
        for i, k in enumerate(SIZES[:2])
    ]  # fmt: skip
    return plans, grads


@pytest.mark.parametrize(
    "backend",
    [
        solvers.Unrolled(1000, method=solvers.Sinkhorn()),
        solvers.Implicit(method=solvers.Sinkhorn()),
        solvers.Implicit(method=solvers.Sinkhorn(), linear_solver="lu"),
    ],  # fmt: skip
)
def test_plans_and_gradients_agree_with_ott_jax(backend, cost, oracle):
    """ott-jax's Sinkhorn, differentiated implicitly by its own linear solver, is the oracle:
    plans and gradients w.r.t. the cost agree to 1e-6 (float64)."""
    plan, stats = jax.jit(plans)(backend, balanced(cost))
    assert stats.converged.all()
    oracle_plans, oracle_grads = oracle
    for i, k in enumerate(SIZES):
        np.testing.assert_allclose(plan[i, :k], oracle_plans[i], atol=1e-9)
        np.testing.assert_array_equal(plan[i, k:], 0)  # masked rows carry no mass
    ours = jax.jit(jax.grad(lambda c: jnp.sum(plans(backend, balanced(c))[0] * WEIGHTS)))(cost)
    for i in range(2):
        np.testing.assert_allclose(ours[i], oracle_grads[i], atol=1e-6)
    # One real row: its plan is the column marginal whatever the cost (ott-jax's implicit
    # solve is singular there, so the oracle is this fact).
    np.testing.assert_allclose(ours[2], 0, atol=1e-9)


@pytest.mark.parametrize("penalties", [(None, None), (2.0, None), (0.5, 3.0)])
def test_plans_meet_their_marginals_at_convergence(penalties, cost):
    """Balanced: the marginals exactly. Unbalanced: the optimality conditions of the KL
    penalties, `P 1 = r e^{-f/ρ}`."""
    problem = balanced(cost)
    rho_r, rho_c = (None if r is None else jnp.asarray(r) for r in penalties)
    problem = solvers.EntropicOT(problem.cost, problem.row_mass, problem.col_mass,
                                 problem.row_mask, problem.eps, rho_r, rho_c)  # fmt: skip
    y0 = jnp.zeros((len(SIZES), N + P))
    sol = solvers.Implicit(method=solvers.Sinkhorn()).solve(
        solvers.dual_energy, y0, problem, optimality=solvers.transport_optimality
    )
    f, g = problem.split(sol.value)
    plan = problem.plan(sol.value)
    rows = problem.row_mass * (1 if rho_r is None else jnp.exp(-f / rho_r))
    cols = problem.col_mass * (1 if rho_c is None else jnp.exp(-g / rho_c))
    np.testing.assert_allclose(plan.sum(2), jnp.where(problem.row_mask, rows, 0), atol=1e-9)
    np.testing.assert_allclose(plan.sum(1), cols, atol=1e-9)
    assert np.all(sol.stats.num_steps < 200)


def test_unbalanced_sinkhorn_converges_with_large_penalties(cost):
    """Damped updates alone move the total mass by a factor ρ/(ρ + ε) per step (300 steps
    were not enough at ρ = 1e5, ε = 100); the translation step solves it in a few."""
    problem = balanced(cost)
    problem = solvers.EntropicOT(problem.cost, problem.row_mass, problem.col_mass,
                                 problem.row_mask, jnp.asarray(100.0), jnp.asarray(1e5),
                                 jnp.asarray(1e5))  # fmt: skip
    _, stats = plans(solvers.Implicit(method=solvers.Sinkhorn()), problem)
    assert stats.converged.all() and np.all(stats.num_steps <= 10)

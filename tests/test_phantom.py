"""Phantom gradients: a converged forward and `k` damped taped steps, the Jacobian-free
gradient at `k = 1`, the implicit gradient in the limit (and in one Newton step)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_agg
import solvers

from .helpers import neural_layer, random_set, relative_error


def test_one_gradient_step_is_the_jacobian_free_gradient():
    """Mean of N elements, one step of lr·τ from the mean: `dy/dx_i = 2 τ lr s`, with the
    scaled energy's `s = log2(N + 1) / (N + ε)` (eq. 13), where the implicit gradient is
    `1/N`."""
    n, lr, damping = 7, 0.1, 0.5
    method = solvers.Nesterov(lr=lr, gtol=None)
    layer = eqx_agg.EquilibriumAggregation(
        eqx_agg.energies.Mean(), solvers.Phantom(200, k=1, damping=damping, method=method)
    )
    x = random_set(0, n, 2)
    jac = jax.jacrev(layer)(x)  # [m, n, d]
    s = np.log2(n + 1) / (n + 1e-8)
    expected = np.einsum("md,n->mnd", np.eye(2), np.full(n, 2 * damping * lr * s))
    np.testing.assert_allclose(jac, expected, rtol=1e-9)
    np.testing.assert_allclose(layer(x), jnp.mean(x, 0), atol=1e-7)


def test_more_damped_steps_approach_the_implicit_gradient():
    x = random_set(1, 9, 3)
    implicit = jax.grad(lambda x: jnp.sum(jnp.sin(neural_layer(solvers.Implicit())(x))))(x)
    errors = []
    for k in [1, 10, 100]:
        solver = solvers.Phantom(k=k, damping=0.7, method=solvers.Nesterov(lr=0.5, gtol=None))
        grad = jax.grad(lambda x, s=solver: jnp.sum(jnp.sin(neural_layer(s)(x))))(x)
        errors.append(relative_error(grad, implicit))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-2


def test_newton_beyond_dense_size_differentiates():
    """A 40-wide aggregate is past Newton's `dense_size` (32): its steps are CG steps on
    Hessian-vector products, and one of them from the solution approximates the implicit
    gradient as well as its CG iterations approximate `H⁻¹`: to CG's tolerance (1e-3) when
    they may reach it, roughly with the default three (it raised "Linearization failed"
    before). Each is compared with Implicit on the same forward (the same stationary point)."""
    x = random_set(2, 9, 3)
    energy = eqx_agg.energies.Neural(3, 40, widths=(16, 8), key=jax.random.PRNGKey(0))

    def error(method):
        gradients = []
        for solver in (solvers.Phantom(method=method), solvers.Implicit(method=method)):
            layer = eqx_agg.EquilibriumAggregation(energy, solver)
            gradients.append(jax.grad(lambda x, layer=layer: jnp.sum(jnp.sin(layer(x))))(x))
        return relative_error(*gradients)

    converged, default = error(solvers.Newton(cg_steps=80)), error(solvers.Newton())
    assert converged < 1e-2 and 10 * converged < default < 1


@pytest.mark.parametrize("damping", [0.0, -0.5, 1.5])
def test_damping_outside_the_unit_interval_is_refused(damping):
    with pytest.raises(ValueError, match="damping"):
        solvers.Phantom(damping=damping)


def test_an_unconverged_forward_raises_saying_more_steps_would_help():
    slow = solvers.Anderson(history=1, lr=0.05)  # plain gradient descent, slow and steady
    with pytest.raises(Exception, match="still falling"):
        neural_layer(solvers.Phantom(steps=20, method=slow))(random_set(2, 9, 3))

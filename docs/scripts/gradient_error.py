"""Per backend: relative gradient error against float64 central finite differences.

Usage: `python docs/scripts/gradient_error.py STEPS` (the table in docs/backends.md).
"""

import sys

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import eqx_agg  # noqa: E402
import solvers  # noqa: E402


def relative_error(solver, x, energy, num_coords=60, eps=1e-6):
    """Relative error of d loss / d(x, θ) vs central differences on random coordinates."""
    params, static = eqx.partition(energy, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree((x, params))

    def loss(z):
        x, params = unravel(z)
        layer = eqx_agg.EquilibriumAggregation(eqx.combine(params, static), solver)
        return jnp.sum(jnp.sin(layer(x)))

    grad = np.asarray(jax.grad(loss)(flat))
    loss = jax.jit(loss)
    coords = np.random.default_rng(0).choice(flat.size, num_coords, replace=False)
    fd = np.array(
        [(loss(flat.at[i].add(eps)) - loss(flat.at[i].add(-eps))) / (2 * eps) for i in coords]
    )
    return np.linalg.norm(grad[coords] - fd) / np.linalg.norm(fd)


def main(steps: int) -> None:
    x = jax.random.normal(jax.random.PRNGKey(1), (20, 3))
    energy = eqx_agg.energies.Neural(3, 4, widths=(32, 16, 8), key=jax.random.PRNGKey(0))
    backends = {
        f"Unrolled(steps={steps})": solvers.Unrolled(steps=steps, gtol=0.0),
        f"Implicit(steps={steps}, cg)": solvers.Implicit(steps=steps, gtol=0.0, tol=1e-12),
        f"Truncated(steps={steps}, k=100)": solvers.Truncated(steps=steps, k=100, gtol=0.0),
    }
    for name, solver in backends.items():
        residual = eqx_agg.EquilibriumAggregation(energy, solver).solve(x).stats.grad_max_norm
        error = relative_error(solver, x, energy)
        print(f"{name:32s} max|dE/dy| = {float(residual):.1e}  relative error = {error:.2e}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)

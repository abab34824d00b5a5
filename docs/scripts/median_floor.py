"""How close T Nesterov steps on the textbook median energy get to the median (D.1 sets).

For each T, the held-out MSE of `EquilibriumAggregation(Median(δ), Unrolled(T, lr, β))`
against the true median, at the best (δ, lr, β) of a grid: what the paper's 5 inner steps
can give with the exact potential and no training.

Usage: `python docs/scripts/median_floor.py` (the table in docs/results.md).
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp

import eqx_agg
import solvers
from benchmarks.shared.data.median import median_sets

SMOOTHINGS = (0.003, 0.01, 0.03, 0.1)
LRS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
MOMENTA = (0.1, 0.3, 0.5, 0.7, 0.9)


@eqx.filter_jit
def mse(layer, x, median):
    return jnp.mean((jax.vmap(layer)(x)[:, 0] - median) ** 2)


def main():
    x, median = median_sets(jax.random.PRNGKey(3), 2048, 100)
    print("| inner steps T | MSE | δ | lr | momentum |\n|---|---|---|---|---|")
    for steps in (5, 10, 20, 30):
        best = min(
            (
                float(
                    mse(
                        eqx_agg.EquilibriumAggregation(
                            eqx_agg.energies.Median(smoothing=delta),
                            solvers.Unrolled(steps, lr, momentum, gtol=0.0, throw=False),
                        ),
                        x,
                        median,
                    )
                ),
                delta,
                lr,
                momentum,
            )
            for delta, lr, momentum in itertools.product(SMOOTHINGS, LRS, MOMENTA)
        )
        print(f"| {steps} | {best[0]:.2g} | {best[1]} | {best[2]} | {best[3]} |")


if __name__ == "__main__":
    main()

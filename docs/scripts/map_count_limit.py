"""Reproduce the XLA CPU compile crash of long test runs: the kernel's memory-map limit.

Every compiled XLA CPU executable keeps its machine code in memory maps (a few hundred for
a layer's forward+backward over several sets), and JAX's caches keep every executable alive,
so a process that compiles many distinct functions (a pytest worker running hundreds of
tests) reaches Linux's `vm.max_map_count` (65530 by default): the next compilation then
fails inside LLVM ("Cannot allocate memory") or crashes the process. `jax.clear_caches()`
releases the executables nobody else holds, and their maps with them: the test suite does
it after any test that leaves its worker above half the limit (tests/conftest.py).

    python docs/scripts/map_count_limit.py          # compiles until it fails (a few minutes)
    python docs/scripts/map_count_limit.py --clear  # clears JAX's caches at half: runs on
"""

import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

import eqx_agg
import solvers

LIMIT = int(Path("/proc/sys/vm/max_map_count").read_text())


def maps() -> int:
    with open("/proc/self/maps") as lines:
        return sum(1 for _ in lines)


def _loss(layer_and_x, ids):
    layer, x = layer_and_x
    return jnp.sum(layer.segments(x, ids, 2))


def main(clear: bool, compilations: int = 400) -> None:
    energy = eqx_agg.energies.Neural(3, 3, (16, 8), key=jax.random.PRNGKey(0))
    layer = eqx_agg.EquilibriumAggregation(energy, solvers.Implicit(30))
    for n in range(4, compilations + 4):  # a new set size: new executables
        x = jnp.linspace(-1, 1, 3 * n).reshape(n, 3)
        eqx.filter_jit(eqx.filter_grad(_loss))((layer, x), jnp.arange(n) % 2)
        count = maps()
        print(f"{n - 3} compilations: {count} memory maps (limit {LIMIT})", flush=True)
        if clear and count > LIMIT // 2:
            jax.clear_caches()


if __name__ == "__main__":
    main(clear="--clear" in sys.argv)

"""Keep a long-running process under the kernel's limit on memory maps.

Every compiled XLA CPU executable holds memory maps; a process that compiles many functions
(a benchmark training dozens of models, a test worker running hundreds of tests) reaches
Linux's `vm.max_map_count` (65530 by default), and LLVM then fails mid-compile ("Cannot
allocate memory", or a crash). Dropping JAX's caches releases the executables nobody holds.
"""

from pathlib import Path

import jax

MAX_MAP_COUNT = Path("/proc/sys/vm/max_map_count")
MAPS = Path("/proc/self/maps")


def release_if_near_limit(fraction: float = 0.5) -> bool:
    """Clear JAX's caches (`jax.clear_caches`) when this process holds more than `fraction`
    of the allowed memory maps; returns whether it did. A no-op where `/proc` does not say
    (not Linux)."""
    try:
        limit = int(MAX_MAP_COUNT.read_text())
        with MAPS.open() as maps:
            used = sum(1 for _ in maps)
    except OSError:
        return False
    if used <= fraction * limit:
        return False
    jax.clear_caches()
    return True

"""Test configuration: float64 by default, a key fixture, two hypothesis profiles, a
persistent compilation cache, and JAX's compiled functions released when a worker nears the
kernel's memory-map limit.

- `ci` (default): a few examples per property, derandomised, so `make test` stays short.
- `long`: at least 100 examples per property, random: `pytest --hypothesis-profile=long`.

The persistent cache (`.xla-cache/`, shared by the xdist workers and the subprocesses the
tests start) compiles each distinct XLA computation once: the tests rebuild the same layers
and training steps many times (every seed, every worker), and compilation is most of their
time on a CPU. A warm cache also makes the next run faster. For the same reason XLA compiles
for compile time, not run time (unless XLA_FLAGS is set): without LLVM's optimisation passes
(`--xla_backend_optimization_level=0`: 27 % less wall time on tests/test_implicit.py) and
with XLA's older CPU fusion code generator (`--xla_cpu_use_fusion_emitters=false`, with
`--xla_llvm_disable_expensive_passes`: a further 37 % less compile time, 20 % less wall time,
on the strategy matrix's Newton rows); the same results to rounding (a while-loop and a scan
of the same steps, bit-identical before, are 1 ulp apart).
"""

import itertools
import os
from pathlib import Path

import jax
import jaxtyping
import pytest
from hypothesis import HealthCheck, settings

from benchmarks.shared import compiled

FAST_COMPILE = (
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false "
    "--xla_llvm_disable_expensive_passes=true"
)
os.environ.setdefault("XLA_FLAGS", FAST_COMPILE)  # before any compile
jax.config.update("jax_enable_x64", True)

CACHE = {
    "JAX_COMPILATION_CACHE_DIR": str(Path(__file__).resolve().parents[1] / ".xla-cache"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": 0.0,
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": 0,
}
for name, value in CACHE.items():
    os.environ.setdefault(name, str(value))  # inherited by the subprocesses the tests start
    jax.config.update(name.lower(), type(value)(os.environ[name]))

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=8, deadline=None, derandomize=True, suppress_health_check=_SLOW_OK
)
settings.register_profile("long", max_examples=100, deadline=None, suppress_health_check=_SLOW_OK)
settings.load_profile("ci")


def pytest_collection_modifyitems(items):
    """Mark every hypothesis property `property`, so the long profile can run them alone."""
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.property)


@pytest.fixture
def getkey():
    """`getkey()` returns a fresh `jax.random` key each call (deterministic per test)."""
    counter = itertools.count()
    return lambda: jax.random.PRNGKey(next(counter))


@pytest.fixture
def without_runtime_checks():
    """The library's own checks, as a user without jaxtyping's runtime checks meets them."""
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", False)


@pytest.fixture(autouse=True)
def _release_compiled_functions():
    """After each test, drop JAX's compiled functions if the worker holds half the memory
    maps the kernel allows: XLA's CPU executables hold maps (a few hundred each), and at the
    limit LLVM fails mid-compile (docs/scripts/map_count_limit.py reproduces it). Checked
    after every test, not every module: one module's compilations alone can take a worker
    from half the limit to the crash. The persistent cache makes the recompilations cheap."""
    yield
    compiled.release_if_near_limit()

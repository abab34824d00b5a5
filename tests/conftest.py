"""Test configuration: float64 by default, a key fixture, two hypothesis profiles, and JAX's
compiled functions released when a worker nears the kernel's memory-map limit.

- `ci` (default): a few examples per property, derandomised, so `make test` stays short.
- `long`: at least 100 examples per property, random: `pytest --hypothesis-profile=long`.
"""

import itertools

import jax
import jaxtyping
import pytest
from hypothesis import HealthCheck, settings

from benchmarks.shared import compiled

jax.config.update("jax_enable_x64", True)

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=8, deadline=None, derandomize=True, suppress_health_check=_SLOW_OK
)
settings.register_profile("long", max_examples=100, deadline=None, suppress_health_check=_SLOW_OK)
settings.load_profile("ci")


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


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_functions():
    """After each test module, drop JAX's compiled functions if the worker holds half the
    memory maps the kernel allows (XLA's CPU executables hold maps; at the limit LLVM fails
    mid-compile)."""
    yield
    compiled.release_if_near_limit()

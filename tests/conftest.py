"""Test configuration: float64 everywhere, a key fixture, a fast deterministic hypothesis."""

import itertools

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)

settings.register_profile(
    "eqx_agg",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("eqx_agg")


@pytest.fixture
def getkey():
    """`getkey()` returns a fresh `jax.random` key each call (deterministic per test)."""
    counter = itertools.count()
    return lambda: jax.random.PRNGKey(next(counter))

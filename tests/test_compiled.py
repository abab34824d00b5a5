"""`release_if_near_limit` drops JAX's compiled functions only past its share of the
kernel's memory-map limit."""

import sys

import jax
import pytest

from benchmarks.shared import compiled


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_releases_compiled_functions_only_past_the_fraction():
    double = jax.jit(lambda x: 2 * x)
    double(1.0)
    assert double._cache_size() == 1
    assert not compiled.release_if_near_limit(fraction=1.0)  # never all the maps
    assert double._cache_size() == 1
    assert compiled.release_if_near_limit(fraction=0.0)
    assert double._cache_size() == 0

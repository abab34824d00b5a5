"""Every Python example in the README and the guides runs as written, in float32 as a user
runs them (the rest of the suite runs in float64): each page's blocks run in order, in one
namespace, and their asserts (a loss that falls, a converged solve) must hold."""

import re
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", flags=re.S)
PAGES = [
    str(page.relative_to(ROOT))
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if PYTHON_BLOCK.search(page.read_text())
]
SLOW_PAGES = {"docs/benchmarks.md", "README.md", "docs/getting-started.md"}
"""Pages whose examples train for a minute or more under the tests' compile-for-speed XLA
flags (a backend recommendation, 500-step training runs): `make test-long` runs them."""


@pytest.fixture
def float32():
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", True)


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=[pytest.mark.slow] * (p in SLOW_PAGES)) for p in PAGES]
)
def test_python_examples_run(page, float32):
    blocks = PYTHON_BLOCK.findall((ROOT / page).read_text())
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)

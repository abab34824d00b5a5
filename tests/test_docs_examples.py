"""The Python examples in the README and the guides run as written, in float32 as a user
runs them (the rest of the suite runs in float64)."""

import re
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "README.md",
    "docs/getting-started.md",
    "docs/extending.md",
    "docs/pooling.md",
    "docs/otke.md",
    "docs/rotp.md",
]


@pytest.fixture
def float32():
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", True)


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run(page, float32):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), flags=re.S)
    assert blocks, f"{page} has no python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)

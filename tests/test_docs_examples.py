"""The Python examples in the README and the guides run as written."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/getting-started.md", "docs/extending.md", "docs/pooling.md"]


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run(page):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), flags=re.S)
    assert blocks, f"{page} has no python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)

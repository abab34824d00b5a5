"""Every benchmark suite is registered, importable and run by `make bench`."""

import importlib

from benchmarks import __main__ as cli
from benchmarks import default


def test_suites_registered():
    for name in ("default", "accuracy", "memory", "timing", "convergence", "select"):
        module = importlib.import_module(cli.SUITES[name][0])
        assert callable(module.main)
    assert set(default.SUITES) == {"accuracy", "memory", "timing", "convergence", "select"}

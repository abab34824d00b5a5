"""The command line: every command is registered and importable, `make bench` runs the backend
suites, helps show defaults, and bad values are one-line usage errors."""

import importlib
import re
import subprocess
import sys

import pytest

from benchmarks import __main__ as cli
from benchmarks import default

COMMANDS = ["default", "gpu", "accuracy", "memory", "timing", "convergence", "forward",
            "time-to-accuracy", "select", "median", "counting", "molecules"]  # fmt: skip


def test_commands_registered():
    assert list(cli.COMMANDS) == COMMANDS
    for name in COMMANDS:
        assert callable(importlib.import_module(cli.COMMANDS[name][0]).main)
    assert set(default.SUITES) == {"accuracy", "memory", "timing", "convergence", "select"}


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *argv], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("command", ["timing", "median"])
def test_help_shows_defaults_and_examples(command):
    done = run(command, "--help")
    assert done.returncode == 0
    assert "(default: " in done.stdout and "examples:\n  python -m benchmarks" in done.stdout
    assert "issue" not in done.stdout.lower() and "item " not in done.stdout
    # one default per flag: none after a help text that names its own
    assert not re.search(r"default: [^()]*\) \(default:", " ".join(done.stdout.split()))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["median", "--dims", "a"], "argument --dims: expected a int, got 'a'"),
        (
            ["select", "--candidates", "unrolled:0"],
            "argument --candidates: in 'unrolled:0': expected a value >= 1",
        ),
        (["timing", "--backends", "adjoint"], "argument --backends: invalid choice"),
        (["molecules", "--readouts", "set2set"], "argument --readouts: invalid choice"),
    ],
)
def test_bad_values_are_one_line_usage_errors(argv, message):
    done = run(*argv)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr.splitlines()[-1]

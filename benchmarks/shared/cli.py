"""Command-line conventions of every suite and task.

- Every help shows the defaults, and keeps the description's examples as written.
- One list syntax: space-separated values (`--inner-steps 1 2 5`, `--dims 1 2 4`).
- Values are validated by argparse: a bad one is a one-line usage error, not a traceback.
- One meaning per flag: `--steps` counts optimiser steps, `--inner-steps` the inner solver's
  steps T, `--backends` the backends compared, `--backend` an EA layer's backend,
  `--truncate-k` Truncated's taped steps.
"""

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every help line (unless the line names its own); the description printed
    as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def parser(command: str, description: str | None) -> argparse.ArgumentParser:
    """The parser of `python -m benchmarks <command>`."""
    return argparse.ArgumentParser(
        prog=f"python -m benchmarks {command}",
        description=description,
        formatter_class=HelpFormatter,
    )


def _number(kind, low: float, strict: bool, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
    if value < low or (strict and value == low):
        bound = f"> {low}" if strict else f">= {low}"
        raise argparse.ArgumentTypeError(f"expected a value {bound}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An int >= 1 (argparse type)."""
    return _number(int, 1, False, text)


def non_negative_int(text: str) -> int:
    """An int >= 0 (argparse type)."""
    return _number(int, 0, False, text)


def positive_float(text: str) -> float:
    """A float > 0 (argparse type)."""
    return _number(float, 0.0, True, text)


def non_negative_float(text: str) -> float:
    """A float >= 0 (argparse type)."""
    return _number(float, 0.0, False, text)

"""Construction-time checks of strategy options: a bad value raises naming the option."""

import operator
from typing import Any


def check_int(value: Any, name: str, low: int = 1) -> int:
    """`value` as an int `>= low`; `TypeError` for a non-integer, `ValueError` below `low`."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return value


def check_positive(value: Any, name: str, optional: bool = False) -> None:
    """`ValueError` unless `value > 0` (or None, when `optional`)."""
    if optional and value is None:
        return
    if not value > 0:
        raise ValueError(f"{name} must be positive{' or None' if optional else ''}, got {value}")


def check_non_negative(value: Any, name: str, optional: bool = False) -> None:
    """`ValueError` unless `value >= 0` (or None, when `optional`)."""
    if optional and value is None:
        return
    if not value >= 0:
        raise ValueError(
            f"{name} must be non-negative{' or None' if optional else ''}, got {value}"
        )


def check_unit_interval(value: Any, name: str, closed_above: bool = True) -> None:
    """`ValueError` unless `0 < value <= 1` (`< 1` when not `closed_above`)."""
    if not (0 < value <= 1 if closed_above else 0 < value < 1):
        interval = "(0, 1]" if closed_above else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value}")

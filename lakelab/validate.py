"""Validation where values enter: one set of checks for configs, hyper-parameters and inputs.

Every check raises ``ValueError`` naming the value and what is allowed, e.g.
``beta must be in (0, inf), got 0.0``, and returns the value (reals as ``float``), so a
caller can write ``beta = check_real("beta", beta, 0.0, low_open=True)``. Configs of both
tracks, the registry's hyper-parameters, the objectives and the solver all call these, so
a range is spelled one way everywhere.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Interval",
    "check_choice",
    "check_nonneg_int",
    "check_positive_int",
    "check_real",
    "interval",
]


def interval(
    low: float | None, high: float | None, *, low_open: bool = False, high_open: bool = False
) -> str:
    """The printed form of a range, e.g. ``(0, inf)`` or ``[0, 0.5)``; a missing bound is an
    open infinite end."""
    left = "(" if low is None or low_open or low == -math.inf else "["
    right = ")" if high is None or high_open or high == math.inf else "]"
    lo = "-inf" if low is None or low == -math.inf else f"{low:g}"
    hi = "inf" if high is None or high == math.inf else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


def check_real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number (not a bool) in the range; returned as ``float``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        where = interval(low, high, low_open=low_open, high_open=high_open)
        raise ValueError(f"{name} must be in {where}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Interval:
    """A range of real numbers, declared once and used to check values and to print the range
    (the registry shows it to the app and the CLI, the objectives check against it)."""

    low: float | None = None
    """Lower bound (None: -inf)."""
    high: float | None = None
    """Upper bound (None: inf)."""
    low_open: bool = False
    """True: the bound itself is excluded, e.g. beta in (0, inf)."""
    high_open: bool = False

    def __str__(self) -> str:
        return interval(self.low, self.high, low_open=self.low_open, high_open=self.high_open)

    def check(self, name: str, value: Any) -> float:
        """``value`` as ``float`` if it lies in the range, else ``ValueError`` naming it."""
        return check_real(
            name, value, self.low, self.high, low_open=self.low_open, high_open=self.high_open
        )


def check_positive_int(name: str, value: Any) -> int:
    """An integer >= 1 (Python's or numpy's; not a bool), returned as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_nonneg_int(name: str, value: Any) -> int:
    """An integer >= 0 (Python's or numpy's; not a bool), returned as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """One of ``choices`` (listed sorted in the message)."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value

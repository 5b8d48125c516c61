"""One set of input checks for the whole package: each failure is one line, `key=value: what is allowed`.

Used by the config validation (`pipeline/config.py`), the optimizer settings, the model registry, the data
loaders and the landscape math alike, so a bad value reads the same wherever it is caught. Pure Python (no
torch, no Hydra): every layer may import it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, NoReturn


def fail(key: str, value: Any, allowed: str) -> NoReturn:
    """Raise `ValueError("key=value: allowed")`."""
    raise ValueError(f"{key}={value!r}: {allowed}")


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def check_int(key: str, value: Any, low: int | None = 1, high: int | None = None) -> int:
    """`value` as an int in [low, high] (None: unbounded)."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            allowed = "must be an integer" + (f" >= {low}" if low is not None else "")
        else:
            allowed = f"must be an integer in [{low}, {high}]"
        fail(key, value, allowed)
    return int(value)


def check_number(
    key: str, value: Any, low: float | None = None, high: float | None = None, *, open_low: bool = False
) -> float:
    """`value` as a finite float in [low, high] (`(low, high]` with `open_low`)."""
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if open_low else '>='} {low}"
        hi = "" if high is None else f"<= {high}"
        fail(key, value, "must be a finite number" + (f" {lo}" if lo else "") + (f" and {hi}" if lo and hi else hi))
    return float(value)


def check_positive(key: str, value: Any) -> float:
    """A finite number > 0."""
    return check_number(key, value, 0, open_low=True)


def check_fraction(key: str, value: Any) -> float:
    """A number in [0, 1]."""
    if not is_number(value) or not 0.0 <= value <= 1.0:
        fail(key, value, "must be a number in [0, 1]")
    return float(value)


def check_choice(key: str, value: Any, allowed: Iterable[Any]) -> Any:
    """`value` if it is one of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        fail(key, value, f"must be one of {', '.join(map(str, allowed))}")
    return value


def check_subset(key: str, values: Any, allowed: Iterable[Any], non_empty: bool = False) -> list[Any]:
    """A list whose items are all drawn from `allowed` (non-empty if asked)."""
    allowed = tuple(allowed)
    if not isinstance(values, (list, tuple)) or (non_empty and not values) or any(v not in allowed for v in values):
        fail(key, values, f"must be a list drawn from: {', '.join(map(str, allowed))}")
    return list(values)

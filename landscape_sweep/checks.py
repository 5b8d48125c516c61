"""One set of input checks for the whole package: each failure is one line, `key=value: what is allowed`.

Used by the config validation (`pipeline/config.py`), the optimizer settings, the model registry, the data
loaders and the landscape math alike, so a bad value reads the same wherever it is caught. Pure Python (no
torch, no Hydra): every layer may import it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

# the largest finite float32: every number a cell computes with is float32 (or converted to it, e.g. an lr in
# `param.add_(grad, alpha=-lr)`), so a larger "finite" value overflows there ("value cannot be converted to type
# float without overflow"), after the cell has started
FLOAT32_MAX = 3.4028234663852886e38
# learning rates (optimizer.lr, optimizer.swa.lr, the curve fits' lr) are in (0, MAX_LR]: 1000x the largest in
# practical use (~10, large-batch SGD on BatchNorm nets), so divergence studies still run (lr=1000), while a
# typo such as 1e308 (or 1e3 meant as 1e-3 by a factor of 10^6) fails before the sweep instead of in every cell
MAX_LR = 1e4
LR_WHY = "1000x the largest in practical use (~10); a larger one only diverges on the first steps or overflows"
SEED_LIMIT = 2**32  # seeds are in [0, 2^32): numpy's seed range, which Lightning's seed_everything enforces


def fail(key: str, value: Any, allowed: str) -> NoReturn:
    """Raise `ValueError("key=value: allowed")`."""
    raise ValueError(f"{key}={value!r}: {allowed}")


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float within float32's range (`FLOAT32_MAX`), not a bool."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        x = float(value)
    except OverflowError:  # an int beyond any float
        return False
    return math.isfinite(x) and abs(x) <= FLOAT32_MAX


def _beyond_float32(value: Any) -> str:
    """The note a finite number beyond float32's range gets in its error ('' for any other value)."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    try:
        beyond = real and (not math.isfinite(float(value)) or abs(float(value)) > FLOAT32_MAX)
        finite = real and math.isfinite(float(value))
    except OverflowError:
        beyond = finite = True
    return f" (at most {FLOAT32_MAX:.3g} in magnitude: cells compute in float32)" if beyond and finite else ""


def check_int(key: str, value: Any, low: int | None = 1, high: int | None = None) -> int:
    """`value` as an int in [low, high] (None: unbounded)."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            allowed = "must be an integer" + (f" >= {low}" if low is not None else "")
        else:
            allowed = f"must be an integer in [{low}, {high}]"
        fail(key, value, allowed)
    return int(value)


CELLS_PER_JOB_KEY = "hydra.launcher.cells_per_job"


def check_cells_per_job(params: Mapping[str, Any]) -> int:
    """Our submitit launchers' `cells_per_job` (1 when absent): an integer >= 1, else ValueError in one line. Here, so
    that the CLI's pre-check (pipeline/app.py) and the launchers (hydra_plugins/, above the pipeline) share it."""
    try:
        return check_int(CELLS_PER_JOB_KEY, params.get("cells_per_job", 1))
    except ValueError as e:
        raise ValueError(f"{e} (the number of cells each submitted job runs; 1: one cell per job)") from None


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
        allowed = "must be a finite number" + (f" {lo}" if lo else "") + (f" and {hi}" if lo and hi else hi)
        fail(key, value, allowed + _beyond_float32(value))
    return float(value)


def check_positive(key: str, value: Any) -> float:
    """A finite number > 0."""
    return check_number(key, value, 0, open_low=True)


def check_lr(key: str, value: Any) -> float:
    """A learning rate: a finite number in (0, MAX_LR] (`MAX_LR` says why)."""
    try:
        real = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    except OverflowError:
        real = True
    if real and value > MAX_LR:
        fail(key, value, f"must be a learning rate in (0, {MAX_LR:g}]: {LR_WHY}")
    return check_positive(key, value)


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


def check_seed(key: str, value: Any) -> int:
    """A seed: an integer in [0, 2^32) (`SEED_LIMIT`)."""
    if not is_int(value) or not 0 <= value < SEED_LIMIT:
        fail(key, value, "must be an integer in [0, 2^32) (the seed range of numpy and Lightning's seed_everything)")
    return int(value)


def check_distinct(key: str, values: Iterable[Any], why: str = "") -> None:
    """Refuse a list with a repeated item (`why`: what a duplicate would do, appended to the message)."""
    seen: list[Any] = []
    for v in values:
        if v in seen:
            fail(key, list(values), f"must not contain duplicates ({v!r} twice){why}")
        seen.append(v)


def check_mapping(key: str, value: Any, allowed: Iterable[str] = (), nullable: bool = False) -> Mapping:
    """A mapping of settings (`{}` for null when `nullable`); `allowed` names its keys in the message."""
    if value is None and nullable:
        return {}
    if not isinstance(value, Mapping):
        keys = ", ".join(sorted(allowed))
        shown = "must be a mapping of settings" + (f" ({keys})" if keys else "")
        fail(key, value, shown + (", or null" if nullable else ""))
    return value

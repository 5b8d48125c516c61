"""results.json: the one contract between a cell (pipeline/) and the sweep report (report/).

Writes are atomic (temp file in the same directory + os.replace), so a killed job never leaves a
half-written file. See DESIGN.md for the schema.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = 1
RESULTS_NAME = "results.json"
STATUSES = ("completed", "failed", "diverged")


def _clean(o: Any) -> Any:
    """JSON-safe copy: non-finite floats become null (strict JSON), tuples become lists, numpy scalars floats."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if hasattr(o, "item") and callable(o.item) and getattr(o, "ndim", 1) == 0:
        o = o.item()
    if hasattr(o, "tolist") and callable(o.tolist):
        return _clean(o.tolist())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | Path) -> dict[str, Any] | None:
    """The parsed file, or None when it does not exist or is unreadable (e.g. from an older crash)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def results_path(job_dir: str | Path) -> Path:
    return Path(job_dir) / RESULTS_NAME

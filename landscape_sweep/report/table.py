"""The sweep table: one row per cell, read from the cells' results.json files only.

A job directory is any folder under the sweep holding `.hydra/` or `results.json`; one without results.json is
reported with status `missing` (killed, or still running) rather than dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from landscape_sweep.results import RESULTS_NAME, atomic_write_text, read_json

CELL_KEYS = ("dataset", "arch", "depth", "width", "norm", "optimizer", "num_params", "train_size", "label_noise")
ENDPOINT_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
TABLE_NAME = "sweep_results.csv"


def job_dirs(sweep_dir: str | Path) -> list[Path]:
    """Job directories of a sweep (or the directory itself for a single run), in job order."""
    root = Path(sweep_dir)
    found = {p.parent for p in root.rglob(RESULTS_NAME)} | {p.parent for p in root.rglob(".hydra") if p.is_dir()}
    found = {d for d in found if "checkpoints" not in d.parts and "wandb" not in d.parts}
    if len(found) > 1:
        found.discard(root)  # the sweep dir's own .hydra (multirun.yaml) is not a cell

    def key(d: Path) -> tuple:
        rel = d.relative_to(root).parts
        return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in rel)

    return sorted(found, key=key)


def load_results(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every cell's results (a `missing` stub where results.json is absent or unreadable)."""
    out = []
    for d in job_dirs(sweep_dir):
        r = read_json(d / RESULTS_NAME)
        if r is None:
            r = {
                "status": "missing",
                "error": "no results.json (job killed, timed out or still running)",
                "cell": {},
                "endpoints": [],
                "connectivity": [],
            }
        r["_job"] = str(d.relative_to(sweep_dir)) if d != Path(sweep_dir) else "."
        out.append(r)
    return out


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and (population) standard deviation of the finite values; NaN when there are none."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return math.nan, math.nan
    m = sum(v) / len(v)
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / len(v))


def cell_row(r: dict[str, Any]) -> dict[str, Any]:
    """One row of the sweep table."""
    cell = r.get("cell") or {}
    row: dict[str, Any] = {"job": r.get("_job"), "status": r.get("status"), "error": r.get("error")}
    row.update({k: cell.get(k) for k in CELL_KEYS})
    eps = r.get("endpoints") or []
    row["num_endpoints"] = len(eps)
    for k in ENDPOINT_METRICS:
        row[f"{k}_mean"], row[f"{k}_std"] = mean_std(e.get(k) for e in eps)
    row["gen_gap_mean"], row["gen_gap_std"] = mean_std(
        e["train_acc"] - e["test_acc"] for e in eps if e.get("train_acc") is not None and e.get("test_acc") is not None
    )
    row["train_time_s"] = (r.get("timing_s") or {}).get("train")
    return row


def sweep_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([cell_row(r) for r in results])


def write_table(sweep_dir: str | Path) -> tuple[Path, pd.DataFrame]:
    """Build `<sweep_dir>/sweep_results.csv` (atomically) and return its path and the table."""
    table = sweep_table(load_results(sweep_dir))
    path = Path(sweep_dir) / TABLE_NAME
    atomic_write_text(path, table.to_csv(index=False))
    return path, table

"""The sweep table: one row per cell, read from the cells' results.json files only.

A job directory is any folder under the sweep holding `.hydra/` or `results.json`; one without results.json is
reported with status `missing` (killed, or still running) rather than dropped.

Columns (documented for users in report.md): `job, status, error`, the cell fields, `num_endpoints`; per-endpoint
metrics as `<metric>_mean/_std` over endpoints (`train_loss, train_acc, test_loss, test_acc, gen_gap` with
gen_gap = train_acc - test_acc, and the sharpness measures); per path method `<method>/<metric>_mean/_std` over
endpoint pairs; timings. Means/stds use the finite values only (std is the population std, 0 for one value).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from landscape_sweep.results import RESULTS_NAME, atomic_write_text, read_json

CELL_KEYS = ("dataset", "arch", "depth", "width", "norm", "optimizer", "num_params", "train_size", "label_noise")
ENDPOINT_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
SHARPNESS_METRICS = (
    "hessian_top_eig",
    "hessian_trace",
    "worst_case",
    "average_case",
    "adaptive_worst_case",
    "adaptive_average_case",
)
PATH_METRICS = (
    "loss_barrier",
    "error_barrier",
    "test_loss_barrier",
    "test_error_barrier",
    "path_length",
    "path_curvature",
)
METHOD_ORDER = ("linear", "linear_aligned", "bezier", "polychain")
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


def _overrides(job_dir: Path) -> str:
    """The job's Hydra overrides as one line ('' when unknown): names a job that left no results.json."""
    try:
        import yaml

        items = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
    except Exception:  # absent or unreadable: the job dir name is all we have
        return ""
    return " ".join(str(o) for o in items) if isinstance(items, list) else ""


def load_results(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every cell's results (a `missing` stub where results.json is absent or unreadable)."""
    out = []
    for d in job_dirs(sweep_dir):
        r = read_json(d / RESULTS_NAME)
        if r is None:
            over = _overrides(d)
            r = {
                "status": "missing",
                "error": "no results.json (job killed, timed out or still running)"
                + (f"; overrides: {over}" if over else ""),
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
    return statistics.mean(v), statistics.pstdev(v)  # exact (rational) sums: equal values give std 0.0


def methods_of(results: Iterable[dict[str, Any]]) -> list[str]:
    """Path methods present in any cell: the known ones in their usual order, then the rest sorted."""
    found = {c.get("method") for r in results for c in (r.get("connectivity") or []) if c.get("method")}
    return [m for m in METHOD_ORDER if m in found] + sorted(found - set(METHOD_ORDER))


def _sharpness(e: dict[str, Any], key: str) -> float | None:
    s = e.get("sharpness") or {}
    if key == "hessian_top_eig":
        eigs = s.get("hessian_top_eigs") or []
        return eigs[0] if eigs else None
    return s.get(key)


def _gap(e: dict[str, Any]) -> float | None:
    a, b = e.get("train_acc"), e.get("test_acc")
    return a - b if a is not None and b is not None else None


def cell_row(r: dict[str, Any], methods: Iterable[str] | None = None) -> dict[str, Any]:
    """One row of the sweep table (`methods`: the path-method columns to fill; default: the cell's own)."""
    cell = r.get("cell") or {}
    row: dict[str, Any] = {"job": r.get("_job"), "status": r.get("status"), "error": r.get("error")}
    row.update({k: cell.get(k) for k in CELL_KEYS})
    eps = r.get("endpoints") or []
    row["num_endpoints"] = len(eps)
    for k in ENDPOINT_METRICS:
        row[f"{k}_mean"], row[f"{k}_std"] = mean_std(e.get(k) for e in eps)
    row["gen_gap_mean"], row["gen_gap_std"] = mean_std(_gap(e) for e in eps)
    for k in SHARPNESS_METRICS:
        row[f"{k}_mean"], row[f"{k}_std"] = mean_std(_sharpness(e, k) for e in eps)
    conn = r.get("connectivity") or []
    for m in methods_of([r]) if methods is None else methods:
        entries = [c for c in conn if c.get("method") == m]
        row[f"{m}/num_pairs"] = len(entries)
        for k in PATH_METRICS:
            row[f"{m}/{k}_mean"], row[f"{m}/{k}_std"] = mean_std(c.get(k) for c in entries)
    timing = r.get("timing_s") or {}
    for k in ("train", "analysis", "total"):
        row[f"{k}_time_s"] = timing.get(k)
    return row


def sweep_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell; every row has the path-method columns of every method seen in the sweep."""
    methods = methods_of(results)
    return pd.DataFrame([cell_row(r, methods) for r in results])


def write_table(sweep_dir: str | Path) -> tuple[Path, pd.DataFrame]:
    """Build `<sweep_dir>/sweep_results.csv` (atomically) and return its path and the table."""
    table = sweep_table(load_results(sweep_dir))
    path = Path(sweep_dir) / TABLE_NAME
    atomic_write_text(path, table.to_csv(index=False))
    return path, table

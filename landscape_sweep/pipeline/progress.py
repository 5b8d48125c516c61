"""Console progress of a sweep: one line per finished cell, printed by the Hydra callback (`hydra_callbacks.py`).

    [3/18] completed  mlp d=2 w=64 sam  test_acc 0.62 ± 0.01  linear barrier 1.3 ± 0.2  (41 s; ETA 9 min)

k counts finished cells in the order they finish, N is the size of the sweep, the ETA extrapolates the sweep's
elapsed time per finished cell. The state lives in `<sweep_dir>/.progress/`, so it holds wherever the cells run
(this process, joblib workers, SLURM nodes sharing the file system): `total` and `start`, written when the multirun
starts, and one empty file per finished cell whose name, claimed atomically (O_EXCL), is its k.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landscape_sweep.results import CellResult, cell_stats, read_results, results_path

PROGRESS_DIR = ".progress"
# the first present is shown
BARRIER_METHODS = ("linear", "linear_aligned", "linear_aligned_repair", "bezier", "polychain")


def sweep_cells(params: dict[str, Any], overrides: Sequence[str]) -> list[list[str]] | None:
    """Each cell's overrides of a basic-sweeper grid (`hydra.sweeper.params` + command-line overrides), in job
    order; None if unknown."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides([*(f"{k}={v}" for k, v in params.items()), *overrides])
        return [list(cell) for batch in BasicSweeper.split_arguments(parsed, None) for cell in batch]
    except Exception:  # e.g. glob() sweeps that need the config loader: the lines say [k/?]
        return None


def sweep_size(params: dict[str, Any], overrides: Sequence[str]) -> int | None:
    """Number of cells of a basic-sweeper grid; None if unknown."""
    cells = sweep_cells(params, overrides)
    return None if cells is None else len(cells)


def start(sweep_dir: str | Path, total: int | None) -> None:
    """Reset the sweep's progress state: N and the start time (a re-run of the sweep counts afresh)."""
    state = Path(sweep_dir) / PROGRESS_DIR
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    (state / "total").write_text("" if total is None else str(total))
    (state / "start").write_text(repr(time.time()))


def _read_number(path: Path) -> float | None:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None


def claim(sweep_dir: str | Path) -> tuple[int, int | None, float | None]:
    """(k, N, elapsed seconds of the sweep) for a cell that just finished; N and elapsed None when unknown."""
    state = Path(sweep_dir) / PROGRESS_DIR
    state.mkdir(parents=True, exist_ok=True)
    k = sum(1 for p in state.iterdir() if p.name.isdigit()) + 1
    while True:
        try:
            os.close(os.open(state / str(k), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:  # another cell finished at the same moment
            k += 1
    total, t0 = _read_number(state / "total"), _read_number(state / "start")
    return k, None if total is None else int(total), None if t0 is None else time.time() - t0


def duration(seconds: float) -> str:
    """`41 s`, `9 min`, `2 h 05 min`."""
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    if seconds < 3570:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def _pm(stat: Any) -> str:
    """`mean ± se`: the standard error of the mean (over pairs, the jackknife over endpoints: `results.Stat`)."""
    if stat is None:
        return "n/a"
    return f"{stat.mean:.3g}" + ("" if math.isnan(stat.se) else f" ± {stat.se:.2g}")


def cell_text(result: CellResult | None, overrides: Sequence[str] = ()) -> str:
    """`mlp d=2 w=64 sam` from the cell fields, else the job's overrides."""
    cell = result.cell if result is not None else {}
    if cell.get("arch") is not None:
        return f"{cell['arch']} d={cell.get('depth')} w={cell.get('width')} {cell.get('optimizer')}"
    return " ".join(overrides) or "(no overrides)"


def measures_text(result: CellResult) -> str:
    """`test_acc 0.62 ± 0.01  linear barrier 1.3 ± 0.2` (completed), the error otherwise."""
    if result.status != "completed":
        error = result.error or "no error recorded"
        return error if len(error) <= 160 else error[:157] + "..."
    stats = cell_stats(result)
    parts = [f"test_acc {_pm(stats.get('test_acc'))}"]
    method = next((m for m in BARRIER_METHODS if f"{m}/loss_barrier" in stats), None)
    if method is not None:
        parts.append(f"{method} barrier {_pm(stats[f'{method}/loss_barrier'])}")
    return "  ".join(parts)


def cell_line(
    k: int, total: int | None, status: str, cell: str, measures: str, seconds: float, elapsed: float | None
) -> str:
    """`[k/N] status  cell  measures  (time; ETA …)`; the ETA extrapolates `elapsed` over the finished cells."""
    eta = ""
    if total is not None and elapsed is not None:
        eta = f"; ETA {duration(elapsed / k * max(total - k, 0))}"
    return f"[{k}/{total if total is not None else '?'}] {status}  {cell}  {measures}  ({duration(seconds)}{eta})"


def finished_line(
    sweep_dir: str | Path,
    job_dir: str | Path,
    seconds: float,
    overrides: Sequence[str] = (),
    failure: tuple[str, str] | None = None,
) -> str:
    """The line of a cell that just finished in `job_dir` after `seconds` (claims its k). `failure`: (status, one
    line) of a job that raised (e.g. a refused cell, whose job dir holds another config's results)."""
    k, total, elapsed = claim(sweep_dir)
    if failure is not None:
        return cell_line(k, total, failure[0], " ".join(overrides) or "(no overrides)", failure[1], seconds, elapsed)
    try:
        result = read_results(job_dir)
    except Exception:  # a results.json this version cannot read: the report says why
        result = CellResult(status="invalid", error="results.json cannot be read")
    if result is None:
        result = CellResult(status="failed", error="no results.json (the job raised before writing it)")
    status = result.status or "?"
    if result.status == "completed" and results_path(job_dir).stat().st_mtime < time.time() - seconds:
        status = "completed (skipped: done before)"
    return cell_line(k, total, status, cell_text(result, overrides), measures_text(result), seconds, elapsed)

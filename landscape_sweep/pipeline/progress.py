"""Console progress of a sweep: one line per finished cell, printed by the Hydra callback (`hydra_callbacks.py`).

    [3/18] completed  mlp d=2 w=64 sam  test_acc 0.62 ± 0.01  linear barrier 1.3 ± 0.2  (41 s; ETA 9 min)

k counts finished cells in the order they finish, N is the size of the sweep, the ETA extrapolates the sweep's
elapsed time per finished cell. The state lives in `<sweep_dir>/.progress/`, so it holds wherever the cells run
(this process, joblib workers, SLURM nodes sharing the file system): `total` and `start`, written when the multirun
starts, and one empty file per finished cell whose name, claimed atomically (O_EXCL), is its k.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landscape_sweep.pipeline.artifacts import lock_holder
from landscape_sweep.results import PATH_METHODS, CellResult, cell_stats, method_label, read_results, results_path

PROGRESS_DIR = ".progress"


def sweep_cells(params: dict[str, Any], overrides: Sequence[str]) -> list[list[str]] | None:
    """Each cell's overrides of a basic-sweeper grid (`hydra.sweeper.params` + command-line overrides), in job
    order; None if unknown."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # deferred: Hydra's sweeper, for a grid only
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


def claim(sweep_dir: str | Path, cell: str | None = None) -> tuple[int, int | None, float | None]:
    """(k, N, elapsed seconds of the sweep) for a cell that just finished; N and elapsed None when unknown. `cell`
    (its job dir relative to the sweep) counts each cell once: a cell that already finished since the sweep
    started (a twin sweep's copy, a re-run) gets the current count again instead of a new k, so k never passes
    the number of cells."""
    state = Path(sweep_dir) / PROGRESS_DIR
    state.mkdir(parents=True, exist_ok=True)
    total, t0 = _read_number(state / "total"), _read_number(state / "start")
    elapsed = None if t0 is None else time.time() - t0
    total_n = None if total is None else int(total)
    if cell is not None and not _first_finish(state, cell):
        return _count(state), total_n, elapsed
    k = _count(state) + 1
    while True:
        try:
            os.close(os.open(state / str(k), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:  # another cell finished at the same moment
            k += 1
    return k, total_n, elapsed


def _count(state: Path) -> int:
    return sum(1 for p in state.iterdir() if p.name.isdigit())


def _first_finish(state: Path, cell: str) -> bool:
    """Claim `cell`'s marker (O_EXCL); False when it already finished in this sweep's progress."""
    marker = state / f"cell-{hashlib.sha1(cell.encode()).hexdigest()[:16]}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        return False
    return True


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
    method = next((m for m in PATH_METHODS if f"{m}/loss_barrier" in stats), None)  # the first in registry order
    if method is not None:
        parts.append(f"{method_label(method)} barrier {_pm(stats[f'{method}/loss_barrier'])}")
    return "  ".join(parts)


def cell_line(
    k: int, total: int | None, status: str, cell: str, measures: str, seconds: float, elapsed: float | None
) -> str:
    """`[k/N] status  cell  measures  (time; ETA …)`; the ETA extrapolates `elapsed` over the finished cells."""
    eta = ""
    if total is not None and elapsed is not None and k > 0:
        eta = f"; ETA {duration(elapsed / k * max(total - k, 0))}"
    return f"[{k}/{total if total is not None else '?'}] {status}  {cell}  {measures}  ({duration(seconds)}{eta})"


def finished_line(
    sweep_dir: str | Path,
    job_dir: str | Path,
    seconds: float,
    overrides: Sequence[str] = (),
    failure: tuple[str, str] | None = None,
    status: str | None = None,
) -> str:
    """The line of a cell that just finished in `job_dir` after `seconds` (claims its k). `failure`: (status, one
    line) of a job that raised (e.g. a refused cell, whose job dir holds another config's results); `status`: what
    the job returned, when known (a `locked` cell was skipped: another process runs it, and it is not counted)."""
    cell = _relative(sweep_dir, job_dir)
    if status == "locked":
        k, total, elapsed = claim_none(sweep_dir)
        holder = _holder(job_dir)
        return cell_line(k, total, "locked", " ".join(overrides) or "(no overrides)",
                         f"skipped: another process runs this cell ({holder})", seconds, elapsed)  # fmt: skip
    k, total, elapsed = claim(sweep_dir, cell)
    if failure is not None:
        return cell_line(k, total, failure[0], " ".join(overrides) or "(no overrides)", failure[1], seconds, elapsed)
    try:
        result = read_results(job_dir)
    except Exception:  # a results.json this version cannot read: the report says why
        result = CellResult(status="invalid", error="results.json cannot be read")
    if result is None:
        result = CellResult(status="failed", error="no results.json (the job raised before writing it)")
    shown = result.status or "?"
    if result.status == "completed" and results_path(job_dir).stat().st_mtime < time.time() - seconds:
        shown = "completed (skipped: done before)"
    return cell_line(k, total, shown, cell_text(result, overrides), measures_text(result), seconds, elapsed)


def claim_none(sweep_dir: str | Path) -> tuple[int, int | None, float | None]:
    """(cells finished so far, N, elapsed) without claiming a k: for a cell this process did not run."""
    state = Path(sweep_dir) / PROGRESS_DIR
    total, t0 = _read_number(state / "total"), _read_number(state / "start")
    k = _count(state) if state.is_dir() else 0
    return k, None if total is None else int(total), None if t0 is None else time.time() - t0


def _relative(sweep_dir: str | Path, job_dir: str | Path) -> str:
    try:
        return str(Path(job_dir).absolute().relative_to(Path(sweep_dir).absolute()))
    except ValueError:
        return str(Path(job_dir).absolute())


def _holder(job_dir: str | Path) -> str:
    """Who holds the cell's lock, for the `locked` line."""
    try:
        return f"lock held by {lock_holder(job_dir) or 'a process that has since finished'}"
    except Exception:  # a lock or environment this line must not fail on
        return "its lock is held"

"""`python -m landscape_sweep.status <sweep_dir>`: where every cell of a sweep stands, and when it will be done.

One line per cell, then the report job (detached SLURM sweeps) and a summary:

    #0  completed  model.depth=1  job 123_0 COMPLETED  41 s
    #1  failed     model.depth=2  job 123_1 CANCELLED  no results.json; log .../.submitit/123_1/123_1_0_log.err
    #2  pending    model.depth=4  job 123_2 PENDING (Resources)
    report job 125: PENDING (Dependency)
    1/3 completed, 1 failed, 0 diverged, 0 running, 1 pending, 0 missing; ETA ~1 min (median cell 41 s, n=1 ...)

A cell's state comes from its results.json (completed, failed, diverged, with the error line; `invalid`, with the
reason, when the report's validator `results.validate_results` rejects it: not JSON, another schema, a field of
the wrong type), else from the scheduler while it still holds the cell's job (pending with its reason, running with
its elapsed time), else from the cell's lock (a local sweep's running cell), else: failed when SLURM ended the job
(CANCELLED, TIMEOUT, OUT_OF_MEMORY, ... with the job's log) and missing when nothing says what became of it. The
cells and their jobs are read from `<sweep_dir>/sweep.json` (`landscape_sweep.manifest`) and the job dirs, so this
works on local and SLURM sweeps alike, and after the jobs have left the queue. A cell's job dir is always the sweep
dir's own `<sweep_dir>/<num>`, never the absolute path sweep.json recorded: a moved or copied sweep reports its own
cells.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape_sweep import manifest, scheduler
from landscape_sweep.files import dir_problem, read_regular_text
from landscape_sweep.results import job_dirs, job_overrides, results_path, validate_results

STATES = ("completed", "failed", "diverged", "running", "pending", "missing", "invalid")


@dataclass
class CellStatus:
    """One cell: its job number, overrides, state (one of STATES), SLURM job and state, a detail, its time."""

    num: int
    overrides: list[str]
    state: str
    job_id: str | None = None
    slurm: scheduler.JobState | None = None
    detail: str = ""
    seconds: float | None = None


def _cells(sweep: Path, data: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    """num -> {overrides, job_dir, job_id} of the manifest's cells and of every numbered job dir."""
    cells = {num: dict(entry) for num, entry in manifest.cell_entries(data)} if data else {}
    for d in job_dirs(sweep):
        if d.name.isdigit() and int(d.name) not in cells:
            cells[int(d.name)] = {"overrides": job_overrides(d), "job_dir": str(d)}
    for num, entry in cells.items():  # the sweep dir's own job dir: never a recorded absolute path (moved, copied)
        entry["job_dir"] = str(sweep / str(num))
    return dict(sorted(cells.items()))


def read_results_file(job_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(results, None) for a valid results.json, (None, the reason) for one the report's validator rejects (not
    JSON, another schema, a field of the wrong type: `results.validate_results`), (None, None) when there is none."""
    try:
        d = json.loads(read_regular_text(results_path(job_dir)))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
        return None, f"not a readable JSON file: {type(e).__name__}: {e}"
    reason = validate_results(d)
    return (None, reason) if reason else (d, None)


def _one_line(text: Any, limit: int = 200) -> str:
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _slurm_log(sweep: Path, job_id: str) -> Path | None:
    """The submitit stderr log of an array task (`<sweep>/.submitit/<id>/<id>_0_log.err`), if it exists."""
    path = sweep / ".submitit" / job_id / f"{job_id}_0_log.err"
    return path if path.is_file() else None


def _wall_time(job_dir: Path, res: dict[str, Any]) -> float | None:
    """A finished cell's wall time: from its job start (Hydra writes `.hydra/config.yaml`) to its results.json, so
    data loading, W&B and the report files count; else the cell's own `timing_s.total`."""
    try:
        seconds = results_path(job_dir).stat().st_mtime - (job_dir / ".hydra" / "config.yaml").stat().st_mtime
        if seconds > 0:
            return seconds
    except OSError:
        pass
    total = (res.get("timing_s") or {}).get("total")
    return float(total) if isinstance(total, (int, float)) else None


def cell_status(sweep: Path, num: int, entry: dict[str, Any], js: scheduler.JobState | None) -> CellStatus:
    """The state of one cell (see the module docstring for the order in which the sources are read)."""
    from landscape_sweep.pipeline.artifacts import lock_holder  # deferred: the pipeline package, as in main

    job_dir, job_id = Path(entry["job_dir"]), entry.get("job_id")
    cell = CellStatus(num, list(entry.get("overrides") or []), "missing", job_id, js)
    res, invalid = read_results_file(job_dir)
    status = res.get("status") if res is not None else None
    if res is not None:
        cell.seconds = _wall_time(job_dir, res)
    if status == "completed":
        cell.state = "completed"
    elif js is not None and js.active:
        cell.state = "pending" if js.state in scheduler.PENDING else "running"
        cell.detail = js.reason if cell.state == "pending" else (f"for {js.elapsed}" if js.elapsed else "")
    elif status in ("failed", "diverged"):
        cell.state, cell.detail = status, _one_line(res.get("error"))
    elif invalid is not None:
        cell.state, cell.detail = "invalid", _one_line(invalid)
    elif (holder := lock_holder(job_dir)) is not None:
        cell.state, cell.detail = "running", f"lock held by {holder}"
    elif js is not None:
        log = _slurm_log(sweep, job_id) if job_id else None
        cell.state = "missing" if js.state == "COMPLETED" else "failed"
        cell.detail = "no results.json" + (f"; log {log}" if log else "")
    return cell


def sweep_status(
    sweep_dir: str | Path,
) -> tuple[list[CellStatus], dict[str, Any] | None, dict[str, scheduler.JobState]]:
    """Every cell's status, the manifest (None: none) and the scheduler's view of the sweep's jobs."""
    sweep = Path(sweep_dir).absolute()
    data = manifest.read_manifest(sweep)
    cells = _cells(sweep, data)
    jobs = [e["job_id"] for e in cells.values() if e.get("job_id")]
    states = scheduler.job_states([*jobs, *(manifest.report_jobs(data) if data else [])])
    out = [cell_status(sweep, num, e, states.get(e.get("job_id") or "")) for num, e in cells.items()]
    if any(c.state == "running" for c in out):  # a live local sweep: its cells without a dir yet are still to come
        for c in out:
            if c.state == "missing" and c.job_id is None and not Path(cells[c.num]["job_dir"]).exists():
                c.state = "pending"
    return out, data, states


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def summary_line(cells: list[CellStatus]) -> str:
    """`k/N completed, ... ; ETA ...` from the finished cells' times and the cells now running."""
    counts = {s: sum(c.state == s for c in cells) for s in STATES}
    shown = [s for s in STATES[1:] if s != "invalid" or counts[s]]  # `invalid` only when there are such cells
    head = f"{counts['completed']}/{len(cells)} completed, " + ", ".join(f"{counts[s]} {s}" for s in shown)
    times = [c.seconds for c in cells if c.state == "completed" and c.seconds is not None]
    left = counts["running"] + counts["pending"]
    if not left:
        eta = "nothing left running" + (
            "; resubmit the failed/missing cells" if len(cells) > counts["completed"] else ""
        )
    elif not times:
        eta = "ETA unknown (no cell finished yet)"
    else:
        at_once = max(1, counts["running"])
        median = statistics.median(times)
        eta = (
            f"ETA ~{_duration(median * left / at_once)} (median cell {_duration(median)} over n={len(times)} "
            f"completed, {at_once} running at once)"
        )
    return f"{head}; {eta}"


def format_status(sweep: Path, cells: list[CellStatus], data: dict | None, states: dict) -> list[str]:
    """The lines `python -m landscape_sweep.status` prints."""
    shared = set.intersection(*(set(c.overrides) for c in cells)) if len(cells) > 1 else set()
    shown = {c.num: " ".join(o for o in c.overrides if o not in shared) or "-" for c in cells}
    width = max(len(v) for v in shown.values())
    lines = [f"all cells: {' '.join(o for o in cells[0].overrides if o in shared)}"] if shared else []
    for c in cells:
        job = f"job {c.job_id} {c.slurm.state if c.slurm else '(not in the queue)'}" if c.job_id else ""
        extra = " ".join(
            x for x in (c.detail, _duration(c.seconds) if c.state == "completed" and c.seconds else "") if x
        )
        if c.state == "pending" and c.detail:
            job, extra = f"{job} ({c.detail})", ""
        lines.append(f"#{c.num:<3} {c.state:<9}  {shown[c.num]:<{width}}  {job}  {extra}".rstrip())
    for rj in manifest.report_jobs(data) if data else []:
        st = states.get(rj)
        state = f"{st.state}" + (f" ({st.reason})" if st.reason else "") if st else "(not in the queue)"
        lines.append(f"report job {rj}: {state}")
    report = sweep / "report.md"
    if report.is_file():
        lines.append(f"report: {report}")
    lines.append(summary_line(cells))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_sweep.status", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", help="a Hydra multirun directory")
    args = ap.parse_args(argv)
    sweep = Path(args.sweep_dir)
    problem = dir_problem(sweep)
    if problem is not None:
        shown = problem if problem == "not a directory" else f"not a readable directory ({problem})"
        print(f"landscape_sweep.status: sweep_dir={str(sweep)!r}: {shown}", file=sys.stderr)
        return 2
    # deferred: the pipeline package (omegaconf, its import hook) loads only past the argument checks
    from landscape_sweep.pipeline.prechecks import environment_error

    error = environment_error()  # the cells' lock files are read with it
    if error is not None:
        print(f"landscape_sweep.status: {error}", file=sys.stderr)
        return 2
    malformed = manifest.manifest_error(sweep)
    if malformed is not None:  # the cells are still read from the job dirs
        print(f"landscape_sweep.status: {manifest.manifest_path(sweep)} ignored: {malformed}", file=sys.stderr)
    cells, data, states = sweep_status(sweep)
    if not cells:
        print(
            f"landscape_sweep.status: sweep_dir={str(sweep)!r}: no cells (no sweep.json, no job dirs)", file=sys.stderr
        )
        return 2
    print("\n".join(format_status(sweep.absolute(), cells, data, states)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m landscape_sweep.status`: each cell's state from results.json, the scheduler and the cell's lock."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from landscape_sweep import manifest, scheduler, status
from landscape_sweep.pipeline.artifacts import CellLock


def job(sweep: Path, num: int, overrides: list[str], results: dict | None = None, seconds: float = 0) -> Path:
    """A job dir as Hydra and a cell leave it: `.hydra/` at the start, results.json `seconds` later."""
    d = sweep / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (d / ".hydra" / "config.yaml").write_text("{}\n")
    if results is not None:
        (d / "results.json").write_text(json.dumps(results))
        start = time.time() - 1000
        os.utime(d / ".hydra" / "config.yaml", (start, start))
        os.utime(d / "results.json", (start + seconds, start + seconds))
    return d


def no_slurm(monkeypatch, states: dict | None = None) -> None:
    monkeypatch.setattr(scheduler, "job_states", lambda ids: {j: s for j, s in (states or {}).items() if j in ids})


def test_a_finished_local_sweep_is_read_from_its_job_dirs(tmp_path, monkeypatch, capsys):
    no_slurm(monkeypatch)
    job(tmp_path, 0, ["model.depth=1", "seed=0"], {"status": "completed"}, seconds=40)
    job(tmp_path, 1, ["model.depth=2", "seed=0"], {"status": "failed", "error": "ValueError: bad\n  value"})
    job(tmp_path, 2, ["model.depth=4", "seed=0"], {"status": "diverged", "error": "non-finite loss at epoch 3"})
    job(tmp_path, 3, ["model.depth=8", "seed=0"])  # started, never wrote results (killed)
    assert status.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "all cells: seed=0"
    assert lines[1].split() == ["#0", "completed", "model.depth=1", "40", "s"]
    assert lines[2].split(None, 3)[:3] == ["#1", "failed", "model.depth=2"] and lines[2].endswith(
        "ValueError: bad value"
    )
    assert "diverged" in lines[3] and lines[3].endswith("non-finite loss at epoch 3")
    assert lines[4].split() == ["#3", "missing", "model.depth=8"]
    assert lines[-1] == (
        "1/4 completed, 1 failed, 1 diverged, 0 running, 0 pending, 1 missing; nothing left running; resubmit the "
        "failed/missing cells"
    )


def test_a_running_local_sweep_shows_the_locked_cell_running_and_the_rest_pending(tmp_path, monkeypatch):
    no_slurm(monkeypatch)
    cells = [["model.width=16"], ["model.width=64"], ["model.width=256"], ["model.width=1024"]]
    manifest.start_sweep(tmp_path, cells, argv=["-m"], cwd=str(tmp_path), python="python", launcher="x", detach=False)
    job(tmp_path, 0, cells[0], {"status": "completed"}, seconds=30)
    job(tmp_path, 1, cells[1], {"status": "completed"}, seconds=50)
    lock = CellLock(job(tmp_path, 2, cells[2]))
    assert lock.acquire()
    try:
        got, _, _ = status.sweep_status(tmp_path)
        assert [c.state for c in got] == ["completed", "completed", "running", "pending"]
        assert got[2].detail.startswith(f"lock held by pid {os.getpid()}")
        # 2 cells left, one running at a time, median cell 40 s
        assert status.summary_line(got).endswith("ETA ~80 s (median cell 40 s over n=2 completed, 1 running at once)")
    finally:
        lock.release()
    got, _, _ = status.sweep_status(tmp_path)  # the sweep process is gone: nothing says what became of them
    assert [c.state for c in got] == ["completed", "completed", "missing", "missing"]


def test_the_scheduler_decides_for_cells_without_results(tmp_path, monkeypatch):
    cells = [[f"model.depth={d}"] for d in range(1, 7)]
    manifest.start_sweep(tmp_path, cells, argv=["-m"], cwd=str(tmp_path), python="p", launcher="x", detach=True)
    manifest.record_submission(
        tmp_path, {n: f"5_{n}" for n in range(6)}, dict(enumerate(cells)), array="5", report_job="6"
    )
    manifest.record_submission(tmp_path, {5: "7_0"}, {5: cells[5]}, array="7", report_job="8")  # cell 5 resubmitted
    job(tmp_path, 2, cells[2])
    log = tmp_path / ".submitit" / "5_2" / "5_2_0_log.err"
    log.parent.mkdir(parents=True)
    log.write_text("slurmstepd: error: *** JOB 5_2 CANCELLED ***\n")
    job(tmp_path, 4, cells[4], {"status": "completed"}, seconds=20)
    job(tmp_path, 5, cells[5], {"status": "failed", "error": "killed"})  # its first run failed; now queued again
    S = scheduler.JobState
    no_slurm(
        monkeypatch,
        {
            "5_0": S("5_0", "PENDING", "Resources"),
            "5_1": S("5_1", "RUNNING", "", "3:04"),
            "5_2": S("5_2", "CANCELLED"),
            "5_3": S("5_3", "COMPLETED"),
            "5_4": S("5_4", "COMPLETED"),
            "7_0": S("7_0", "PENDING", "Priority"),
            "8": S("8", "PENDING", "Dependency"),
        },
    )
    got, data, states = status.sweep_status(tmp_path)
    assert [(c.state, c.job_id) for c in got] == [
        ("pending", "5_0"),
        ("running", "5_1"),
        ("failed", "5_2"),
        ("missing", "5_3"),  # the job ended well but wrote no results.json for the cell
        ("completed", "5_4"),
        ("pending", "7_0"),
    ]
    assert got[2].detail == f"no results.json; log {log}"
    lines = status.format_status(tmp_path, got, data, states)
    assert lines[0].split() == ["#0", "pending", "model.depth=1", "job", "5_0", "PENDING", "(Resources)"]
    assert lines[1].split()[-3:] == ["RUNNING", "for", "3:04"]
    assert lines[-3:-1] == ["report job 6: (not in the queue)", "report job 8: PENDING (Dependency)"]
    assert lines[-1].startswith(
        "1/6 completed, 1 failed, 0 diverged, 1 running, 2 pending, 1 missing; ETA ~60 s (median cell 20 s over n=1"
    )


@pytest.mark.parametrize("where", ["nowhere", "empty"])
def test_a_dir_that_is_no_sweep_fails_in_one_line(tmp_path, capsys, where):
    target = tmp_path / "no" if where == "nowhere" else tmp_path
    assert status.main([str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"landscape_sweep.status: sweep_dir='{target}': ")


def _finished_sweep(root: Path, states: tuple[str, ...]) -> Path:
    """A local sweep with a manifest (absolute job dirs, as the sweep recorded them) and these cells' results."""
    cells = [[f"model.depth={d}"] for d in range(1, len(states) + 1)]
    manifest.start_sweep(root, cells, argv=["-m"], cwd=str(root), python="p", launcher="x", detach=False)
    for num, state in enumerate(states):
        job(root, num, cells[num], {"status": state, "error": None if state == "completed" else "x"}, seconds=10)
    return root


def test_a_moved_or_copied_sweep_reports_its_own_cells(tmp_path, monkeypatch):
    """Job dirs are the sweep dir's own (`<sweep>/<num>`), not the absolute paths sweep.json recorded."""
    import shutil

    no_slurm(monkeypatch)
    original = _finished_sweep(tmp_path / "original", ("completed", "completed"))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    (original / "1" / "results.json").write_text(json.dumps({"status": "failed", "error": "x"}))
    assert [c.state for c in status.sweep_status(copy)[0]] == ["completed", "completed"]
    moved = tmp_path / "moved"
    original.rename(moved)
    assert [c.state for c in status.sweep_status(moved)[0]] == ["completed", "failed"]
    outside = tmp_path / "elsewhere"  # a manifest naming a job dir outside the sweep is not followed there
    shutil.copytree(moved / "0", outside)
    data = manifest.read_manifest(moved)
    data["cells"]["1"]["job_dir"] = str(outside)
    manifest.write_manifest(moved, data)
    assert [c.state for c in status.sweep_status(moved)[0]] == ["completed", "failed"]


def test_a_results_file_the_report_cannot_read_is_invalid_not_completed(tmp_path, monkeypatch, capsys):
    no_slurm(monkeypatch)
    sweep = _finished_sweep(tmp_path, ("completed", "completed", "completed"))
    (sweep / "1" / "results.json").write_text(json.dumps({"schema": 99, "status": "completed"}))
    (sweep / "2" / "results.json").write_text(json.dumps({"status": "completed", "endpoints": "none"}))
    got, _, _ = status.sweep_status(sweep)
    assert [c.state for c in got] == ["completed", "invalid", "invalid"]
    assert got[1].detail.startswith("schema=99: unknown results schema") and got[2].detail.startswith("endpoints:")
    assert status.main([str(sweep)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("1/3 completed, 0 failed, 0 diverged, 0 running, 0 pending, 0 missing, 2 invalid;")


def test_fifos_planted_in_a_sweep_block_neither_status_nor_the_report(tmp_path, monkeypatch):
    """Whoever can write a shared sweep dir can plant a FIFO where a file is read (results.json, overrides.yaml,
    .lock, sweep.json): reading one would block forever. Only regular files are read; the cell shows as invalid."""
    import signal

    from landscape_sweep.report.table import load_results

    no_slurm(monkeypatch)
    sweep = _finished_sweep(tmp_path, ("completed", "completed"))
    for path in (sweep / "1" / "results.json", sweep / "1" / ".hydra" / "overrides.yaml", sweep / "0" / ".lock"):
        path.unlink(missing_ok=True)
        os.mkfifo(path)

    class Hung(BaseException):  # not an OSError (TimeoutError is one): no `except` in the code under test takes it
        pass

    def hung(*_):
        raise Hung("blocked on a FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        assert [c.state for c in status.sweep_status(sweep)[0]] == ["completed", "invalid"]
        assert [r.status for r in load_results(sweep)] == ["completed", "invalid"]
        manifest.manifest_path(sweep).unlink()
        os.mkfifo(manifest.manifest_path(sweep))
        assert manifest.read_manifest(sweep) is None
        assert [c.state for c in status.sweep_status(sweep)[0]] == ["completed", "invalid"]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_malformed_manifest_is_ignored_in_one_line_and_the_job_dirs_read(tmp_path, monkeypatch, capsys):
    no_slurm(monkeypatch)
    job(tmp_path, 0, ["model.depth=1"], {"status": "completed"}, seconds=40)
    (tmp_path / "sweep.json").write_text(json.dumps({"cells": {"0": {"job_id": 5}}, "submissions": [5]}))
    assert status.main([str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert err == f"landscape_sweep.status: {tmp_path / 'sweep.json'} ignored: cells['0'].job_id=5: must be a string " \
        "(a SLURM job id)\n"  # fmt: skip
    assert out.splitlines()[-1].startswith("1/1 completed")

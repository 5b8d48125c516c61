"""`hydra.launcher.detach=true` without a cluster: what is submitted, the report job, the manifest, the returns.

tests/pipeline/test_slurm.py runs a detached sweep on a real cluster.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from hydra_plugins.landscape_sweep_launchers import SlurmLauncher, _detach, _private
from landscape_sweep import manifest, scheduler


class _Job:
    def __init__(self, job_id: str):
        self.job_id = job_id


class _Executor:
    cluster = "slurm"

    def __init__(self, array: str):
        self.array, self.submitted = array, []

    def map_array(self, fn, *args):
        cells = list(zip(*args)) if len(args) > 1 else list(args[0])
        self.submitted.append(cells)
        return [_Job(f"{self.array}_{i}") for i in range(len(cells))]


def _launcher(tmp_path, monkeypatch, array, states, report=None, **params):
    """A detached SlurmLauncher over a stand-in executor, sbatch and scheduler; returns it and what they saw."""
    seen = SimpleNamespace(executor=_Executor(array), scripts=[], cancelled=[])
    monkeypatch.setattr(_private, "make_executor", lambda launcher: seen.executor)
    monkeypatch.setattr(scheduler, "job_states", lambda ids: {j: s for j, s in states.items() if j in set(ids)})
    monkeypatch.setattr(scheduler, "sbatch", lambda script, log_dir: seen.scripts.append(script) or "99")
    monkeypatch.setattr(scheduler, "cancel", lambda ids: seen.cancelled.extend(ids))
    monkeypatch.setattr(_detach, "_cell_config_hash", lambda launcher, config, ov, num: f"hash{num}")
    launcher = SlurmLauncher(submitit_folder=str(tmp_path / "%j"), detach=True, name="ls", **params)
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "report": report or {}})
    launcher.setup(hydra_context=SimpleNamespace(), task_function=None, config=cfg)
    return launcher, seen


def test_a_detached_launch_submits_the_array_and_a_report_job_after_it_and_returns(tmp_path, monkeypatch, capsys):
    report = {"wandb": True, "facet": ["optimizer.lr"], "select": {"model.width": [16, 64]}}
    launcher, seen = _launcher(tmp_path, monkeypatch, "5", {}, report=report, partition="cpu", setup=["module load x"])
    overrides = [["model.depth=1"], ["model.depth=2"], ["model.depth=4"]]
    returns = launcher.launch(overrides, initial_job_idx=0)
    assert [[c[2] for c in batch] for batch in seen.executor.submitted] == [[0, 1, 2]]
    assert [r.status for r in returns] == [JobStatus.COMPLETED] * 3
    assert [r.return_value for r in returns] == [f"submitted as SLURM job 5_{i}" for i in range(3)]
    (script,) = seen.scripts
    assert "#SBATCH --dependency=afterany:5" in script and "#SBATCH --partition=cpu" in script
    assert script.splitlines()[-2] == "module load x"
    assert script.splitlines()[-1].endswith(
        f"-m landscape_sweep.report {tmp_path} --wandb report.facet=optimizer.lr report.select=model.width=16,64"
    )
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert [e["job_id"] for _, e in manifest.cell_entries(data)] == ["5_0", "5_1", "5_2"]
    assert data["submissions"][-1] == {**data["submissions"][-1], "array": "5", "report_job": "99", "cells": [0, 1, 2]}
    out = capsys.readouterr().out
    assert f"Sweep dir: {tmp_path}" in out and "SLURM array 5 (tasks 5_0, 5_1, 5_2)" in out and "Report job 99" in out
    assert (
        f"python -m landscape_sweep.status {tmp_path}" in out
        and f"python -m landscape_sweep.resubmit {tmp_path}" in out
    )


def test_a_resubmission_skips_completed_and_queued_cells_and_replaces_the_waiting_report_job(tmp_path, monkeypatch):
    overrides = [["model.depth=1"], ["model.depth=2"], ["model.depth=4"], ["model.depth=8"]]
    manifest.record_submission(tmp_path, {i: f"5_{i}" for i in range(4)}, dict(enumerate(overrides)), array="5",
                               report_job="6")  # fmt: skip
    for num, status, hash_ in ((0, "completed", "hash0"), (1, "completed", "an older config"), (3, "failed", "hash3")):
        (tmp_path / str(num)).mkdir()
        (tmp_path / str(num) / "results.json").write_text(json.dumps({"status": status, "config_hash": hash_}))
    S = scheduler.JobState
    states = {"5_2": S("5_2", "RUNNING"), "5_3": S("5_3", "FAILED"), "6": S("6", "PENDING", "Dependency")}
    launcher, seen = _launcher(tmp_path, monkeypatch, "7", states)
    returns = launcher.launch(overrides, initial_job_idx=0)
    # cell 0 is done, cell 2 still runs; cell 1 completed another config, cell 3 failed: both submitted
    assert [[c[2] for c in batch] for batch in seen.executor.submitted] == [[1, 3]]
    assert [r.return_value for r in returns] == [
        "already completed",
        "submitted as SLURM job 7_0",
        "still queued as SLURM job 5_2",
        "submitted as SLURM job 7_1",
    ]
    # the new report job waits for the old array (still running) and the new one; the old one waiting is cancelled
    assert "#SBATCH --dependency=afterany:5:7" in seen.scripts[0] and seen.cancelled == ["6"]
    data = manifest.read_manifest(tmp_path)
    assert [e["job_id"] for _, e in manifest.cell_entries(data)] == ["5_0", "7_0", "5_2", "7_1"]
    assert manifest.report_jobs(data) == ["6", "99"]


def test_packed_cells_share_their_job(tmp_path, monkeypatch):
    launcher, seen = _launcher(tmp_path, monkeypatch, "5", {}, cells_per_job=2)
    launcher.launch([["a=1"], ["a=2"], ["a=3"]], initial_job_idx=0)
    data = manifest.read_manifest(tmp_path)
    assert [e["job_id"] for _, e in manifest.cell_entries(data)] == ["5_0", "5_0", "5_1"]


def test_nothing_to_submit_submits_no_report_job(tmp_path, monkeypatch, capsys):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "results.json").write_text(json.dumps({"status": "completed", "config_hash": "hash0"}))
    launcher, seen = _launcher(tmp_path, monkeypatch, "5", {})
    assert launcher.launch([["a=1"]], initial_job_idx=0)[0].return_value == "already completed"
    assert seen.executor.submitted == [] and seen.scripts == []
    assert "Nothing to submit" in capsys.readouterr().out


def test_a_rejected_report_job_fails_in_one_line_with_the_array_recorded(tmp_path, monkeypatch):
    launcher, _ = _launcher(tmp_path, monkeypatch, "5", {})

    def reject(script, log_dir):
        raise scheduler.SubmitError("sbatch: error: Invalid qos specification")

    monkeypatch.setattr(scheduler, "sbatch", reject)
    with pytest.raises(_detach.ReportJobError, match=r"^hydra.launcher.report_job: sbatch rejected the report job"):
        launcher.launch([["a=1"]], initial_job_idx=0)
    data = manifest.read_manifest(tmp_path)
    assert data["submissions"][-1]["array"] == "5" and data["submissions"][-1]["report_job"] is None
    assert data["cells"]["0"]["job_id"] == "5_0"


def test_a_sweep_dir_no_report_job_can_name_is_refused_before_anything_is_submitted(tmp_path, monkeypatch):
    """A newline in the sweep dir would add a line to the report job's script: refused in one line naming it, before
    the array is submitted (nothing to clean up afterwards)."""
    sweep = tmp_path / "bad\nname"
    sweep.mkdir()
    launcher, seen = _launcher(sweep, monkeypatch, "5", {})
    with pytest.raises(Exception) as err:
        launcher.launch([["a=1"]], initial_job_idx=0)
    msg = str(err.value)
    assert "\n" not in msg and f"sweep_dir={str(sweep)!r}" in msg and "'\\n'" in msg, msg
    assert seen.executor.submitted == [] and seen.scripts == [] and not (sweep / "sweep.json").exists()

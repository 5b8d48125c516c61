"""The Hydra callbacks of a multirun (pipeline/hydra_callbacks.py), called as Hydra calls them, on a synthetic sweep
(tests/_support/sweep.py): the manifest and progress state at multirun start, a line per finished job, and the
sweep report at multirun end (logged to W&B with report.wandb=true, left to its job when detached, never raising).
The CLI tests run them inside real sweeps."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from landscape_sweep.manifest import read_manifest
from landscape_sweep.pipeline.hydra_callbacks import SweepProgress, SweepReport
from tests._support.sweep import make_sweep
from tests._support.wandb_offline import offline_runs, read_run

BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _config(sweep: Path, *, detach: bool = False, wandb: bool = False, job: int | None = None):
    """What Hydra hands the callbacks of a multirun over `sweep` (`job`: the config of that job)."""
    return OmegaConf.create(
        {
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "sweep": {"dir": str(sweep), "subdir": "${hydra.job.num}"},
                "sweeper": {"_target_": BASIC, "params": None},
                "overrides": {"task": ["model.depth=1,2", "optimizer=sgd,sam"]},
                "runtime": {"cwd": str(sweep.parent), "output_dir": str(sweep / str(job or 0))},
                "launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher", "detach": detach},
                "job": {"num": job or 0},
            },
            "report": {"wandb": wandb, "facet": [], "select": {}},
        }
    )


def test_multirun_start_records_the_cells_and_each_finished_job_prints_its_line(tmp_path, monkeypatch, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    monkeypatch.setattr(sys, "argv", ["landscape_sweep", "-m", "model.depth=1,2", "optimizer=sgd,sam"])
    callback = SweepProgress()
    callback.on_multirun_start(_config(sweep))
    manifest = read_manifest(sweep)
    assert manifest["command"]["argv"] == ["-m", "model.depth=1,2", "optimizer=sgd,sam"]
    assert [c["overrides"] for c in manifest["cells"].values()] == [
        ["model.depth=1", "optimizer=sgd"], ["model.depth=1", "optimizer=sam"],
        ["model.depth=2", "optimizer=sgd"], ["model.depth=2", "optimizer=sam"],
    ]  # fmt: skip
    assert manifest["cells"]["3"]["job_dir"] == str(sweep / "3")
    for job in (0, 1, 8):  # a cell the job completes, one completed before the job started, a failed one
        config = _config(sweep, job=job)
        callback.on_job_start(config)
        if job != 1:  # written by the job, after it started (file times are coarser than time.time())
            later = time.time() + 1
            os.utime(sweep / str(job) / "results.json", (later, later))
        ret = JobReturn(overrides=[f"seed={job}"], status=JobStatus.COMPLETED, _return_value=None)
        callback.on_job_end(config, ret)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("[1/4] completed  mlp d=1 w=16 sgd  test_acc "), lines
    assert lines[1].startswith("[2/4] completed (skipped: done before)  mlp d=1 w=64 sgd  "), lines
    assert re.match(r"^\[3/4\] failed  .*RuntimeError: out of memory", lines[2]), lines


def test_a_job_of_a_single_run_prints_no_progress_line(tmp_path, capsys):
    config = _config(make_sweep(tmp_path / "sweep"))
    config.hydra.mode = RunMode.RUN
    SweepProgress().on_job_end(config, JobReturn(status=JobStatus.COMPLETED, _return_value=None))
    assert capsys.readouterr().out == ""


def test_multirun_end_builds_the_report_and_logs_it_to_wandb_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep = make_sweep(tmp_path / "sweep")
    SweepReport().on_multirun_end(_config(sweep, wandb=True))
    import wandb

    wandb.teardown()  # as at the process's exit: W&B's service writes the run's files out after finish() returns
    assert (sweep / "report.md").is_file() and (sweep / "sweep_results.csv").is_file()
    (run,) = [read_run(p) for p in offline_runs(sweep)]  # the report's run, in the sweep dir
    assert run["run"]["job_type"] == "report" and run["exit_code"] == 0
    assert "sweep_results/_type" in run["summary"]


def test_multirun_end_of_a_detached_sweep_leaves_the_report_to_its_job(tmp_path, caplog):
    sweep = make_sweep(tmp_path / "sweep")
    with caplog.at_level(logging.INFO):
        SweepReport().on_multirun_end(_config(sweep, detach=True))
    assert not (sweep / "report.md").exists() and not (sweep / "sweep_results.csv").exists()
    assert f"detached sweep {sweep}: its report job writes the report" in caplog.text


def test_a_failing_report_is_logged_and_the_sweep_goes_on(tmp_path, caplog):
    sweep = make_sweep(tmp_path / "sweep")
    config = _config(sweep)
    config.report.facet = ["no.such_key"]  # a facet the sweep does not have: build_report raises
    with caplog.at_level(logging.ERROR):
        SweepReport().on_multirun_end(config)
    assert f"sweep report failed for {sweep}: " in caplog.text and "no.such_key" in caplog.text
    assert not (sweep / "report.md").exists()
    assert json.loads((sweep / "0" / "results.json").read_text())["status"] == "completed"  # results untouched


@pytest.mark.parametrize("broken", ["progress", "manifest"])
def test_a_progress_or_manifest_problem_never_fails_the_sweep(tmp_path, monkeypatch, caplog, broken):
    sweep = make_sweep(tmp_path / "sweep")
    from landscape_sweep import manifest
    from landscape_sweep.pipeline import progress

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(*((progress, "start") if broken == "progress" else (manifest, "start_sweep")), fail)
    with caplog.at_level(logging.WARNING):
        SweepProgress().on_multirun_start(_config(sweep))
    shown = "sweep progress unavailable" if broken == "progress" else "sweep manifest not written"
    assert f"{shown}: disk full" in caplog.text

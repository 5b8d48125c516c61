"""The cell's W&B run: started in the background without W&B's probes and scans, waited for where it is used."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from landscape_sweep.pipeline import tracking
from landscape_sweep.pipeline.cell import run_cell
from landscape_sweep.pipeline.tracking import Tracker
from tests._support.cli import FAST, REPO, cli_env
from tests._support.wandb_offline import offline_runs, read_run

START = """
import json, sys
from pathlib import Path
from landscape_sweep.pipeline.tracking import Tracker
cfg = {"logger": {"name": "wandb", "wandb": {"project": "p", "save_requirements": False}}, "model": {"width": 8}}
tracker = Tracker(cfg, Path(sys.argv[1]), group="g", job_type="sgd", name="cell")
s = tracker.run.settings
keys = ("console", "x_disable_stats", "x_disable_meta", "x_disable_machine_info", "disable_git", "disable_code",
        "save_code", "disable_job_creation", "label_disable", "x_save_requirements", "mode")
launch = [m for m in ("wandb.sdk.launch.agent", "wandb.sdk.launch._launch") if m in sys.modules]
tracker.log({"seed0/train/loss": 0.5})
tracker.close()
print(json.dumps({"settings": {k: getattr(s, k) for k in keys}, "launch": launch}))
"""


@pytest.mark.slow
def test_the_wandb_run_starts_without_the_probes_a_sweep_does_not_need(tmp_path):
    job = tmp_path / "job"
    out = subprocess.run([sys.executable, "-c", START, str(job)], capture_output=True, text=True, cwd=REPO,
                         env=cli_env(tmp_path), timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["settings"] == {
        "console": "off", "x_disable_stats": True, "x_disable_meta": True, "x_disable_machine_info": True,
        "disable_git": True, "disable_code": True, "save_code": False, "disable_job_creation": True,
        "label_disable": True, "x_save_requirements": False, "mode": "offline",
    }  # fmt: skip
    assert got["launch"] == []  # wandb.init's W&B Launch import stops at the one module it uses
    (run_dir,) = offline_runs(job)
    run = read_run(run_dir)  # what the run records is still there: config, history, exit code
    assert run["config"]["model"] == {"width": 8} and run["history"][0]["seed0/train/loss"] == 0.5
    assert run["exit_code"] == 0
    files = {p.name for p in (run_dir / "files").rglob("*")}
    assert not files & {"wandb-metadata.json", "requirements.txt", "diff.patch"}  # no probes, no scans


def test_a_failed_wandb_start_fails_the_cell(compose_cfg, tmp_path, monkeypatch):
    def no_service(*args, **kwargs):
        raise RuntimeError("no W&B service")

    monkeypatch.setattr(tracking, "start_wandb_run", no_service)
    cfg = compose_cfg([*(o for o in FAST if o != "logger=none"), "logger=wandb", "trainer.max_epochs=1"])
    result = run_cell(cfg, tmp_path / "job")
    assert result.status == "failed" and result.error == "RuntimeError: no W&B service"
    assert json.loads((tmp_path / "job" / "results.json").read_text())["status"] == "failed"


class FakeRun:
    def __init__(self) -> None:
        self.finished: int | None = None

    def finish(self, exit_code: int = 0) -> None:
        self.finished = exit_code


def test_close_waits_for_a_run_still_starting(tmp_path, monkeypatch):
    run = FakeRun()

    def slow_start(*args, **kwargs):
        time.sleep(0.3)
        return run

    monkeypatch.setattr(tracking, "start_wandb_run", slow_start)
    cfg = {"logger": {"name": "wandb", "wandb": {}}}
    t0 = time.perf_counter()
    tracker = Tracker(cfg, tmp_path, group="g", job_type="t", name="n")
    assert time.perf_counter() - t0 < 0.2  # the cell goes on while the run starts
    tracker.close(exit_code=1)  # e.g. the cell failed before it used the run
    assert run.finished == 1 and tracker.wait_s >= 0.1

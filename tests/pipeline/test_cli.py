"""The real CLI in a subprocess: one cell, multiruns (basic and joblib), failure isolation, skip, resume, W&B."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests._support.cli import FAST, check_completed, cli_env, only
from tests._support.wandb_offline import offline_runs, read_run

pytestmark = pytest.mark.slow


def test_single_cell_writes_results(run_cli, tmp_path):
    run_cli(FAST)
    job = only((tmp_path / "logs" / "landscape_sweep" / "runs").iterdir())
    r = check_completed(job)
    assert [e["seed"] for e in r["endpoints"]] == [0, 1]
    assert r["cell"]["dataset"] == "mnist1d" and r["cell"]["train_size"] == 512 and r["cell"]["num_params"] > 0
    assert (job / "checkpoints" / "seed0" / "final.pt").is_file()
    assert not (job / "checkpoints" / "seed0" / "last.ckpt").exists()  # a run shorter than checkpoint_every_s
    assert r["endpoints"][0]["train_loss"] != r["endpoints"][1]["train_loss"]  # different seeds, different nets
    assert list(tmp_path.iterdir()) == [tmp_path / "logs"]  # nothing else written into the working directory


def test_multirun_grid_and_report(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli(["-m", "model.depth=1,2", "optimizer=sgd,adam", f"hydra.sweep.dir={sweep}", *FAST])
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert len(table) == 4 and set(table.status) == {"completed"}
    assert sorted(zip(table.depth, table.optimizer)) == [(1, "adam"), (1, "sgd"), (2, "adam"), (2, "sgd")]
    for col in ("num_params", "train_loss_mean", "train_loss_std", "test_acc_mean", "test_acc_std"):
        assert table[col].notna().all(), col
    assert (table[table.depth == 2].num_params.values > table[table.depth == 1].num_params.values).all()
    (sweep / "sweep_results.csv").unlink()
    out = run_cli([str(sweep)], module="landscape_sweep.report")
    assert "completed" in out.stdout
    assert pd.read_csv(sweep / "sweep_results.csv").equals(table)


def test_joblib_launcher_runs_cells_in_parallel_processes(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli(
        [
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "model.width=8,16",
            f"hydra.sweep.dir={sweep}",
            *[o for o in FAST if not o.startswith("model.width")],
        ]
    )
    for job in ("0", "1"):
        check_completed(sweep / job)
    assert len(pd.read_csv(sweep / "sweep_results.csv")) == 2


def test_failed_cell_is_isolated_and_completed_cells_are_skipped(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "data.train_size=256,100000", f"hydra.sweep.dir={sweep}", *[o for o in FAST if "train_size" not in o]]
    run_cli(args)
    good = check_completed(sweep / "0")
    bad = json.loads((sweep / "1" / "results.json").read_text())
    assert bad["status"] == "failed" and "data.train_size" in bad["error"] and "100000" in bad["error"]
    assert "\n" not in bad["error"]
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert list(table.status) == ["completed", "failed"] and "data.train_size" in table.error[1]

    mtime = (sweep / "0" / "results.json").stat().st_mtime_ns
    again = run_cli(args)
    assert "already completed" in again.stdout + again.stderr
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == mtime
    assert json.loads((sweep / "0" / "results.json").read_text()) == good


def _final_state(job: Path, seed: int) -> dict:
    return torch.load(job / "checkpoints" / f"seed{seed}" / "final.pt", weights_only=True)


def test_resume_after_kill_matches_uninterrupted_run(run_cli, tmp_path, data_dir):
    # ~5 s of training, so the kill lands mid-run (Lightning writes checkpoints atomically: temp file + move)
    args = [
        "trainer.max_epochs=25",
        "model.depth=3",
        "model.width=256",
        "endpoints.seeds=[3]",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.checkpoint_every_s=0",  # last.ckpt after every epoch: the kill waits for the first one
        f"paths.data_dir={data_dir}",
    ]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "landscape_sweep", *args, f"hydra.run.dir={killed}"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt = killed / "checkpoints" / "seed3" / "last.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (killed / "results.json").exists(), "kill came too late or too early"
    resumed = run_cli(["hydra.run.dir=" + str(killed), *args[:-1]])
    assert "resuming from" in resumed.stdout + resumed.stderr
    check_completed(killed)
    straight = tmp_path / "straight"
    run_cli(["hydra.run.dir=" + str(straight), *args[:-1]])
    a, b = _final_state(killed, 3), _final_state(straight, 3)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_writes_the_last_finished_epoch_and_the_cell_resumes_from_it(run_cli, tmp_path, data_dir):
    # default cadence: last.ckpt is only written every 60 s, so the one the resume uses comes from the SIGTERM
    args = ["trainer.max_epochs=25", "data.train_size=1000", "endpoints.seeds=[3]", "logger=none", "landscape=fast",
            "landscape.connectivity.methods=[linear]", f"paths.data_dir={data_dir}"]  # fmt: skip
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "landscape_sweep", *args, f"hydra.run.dir={killed}"],
        cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in proc.stderr:  # the progress lines: stop once epoch 5 has ended
        if "seed 3 epoch 5/25" in line:
            break
    ckpt = killed / "checkpoints" / "seed3" / "last.ckpt"
    assert not ckpt.exists()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and not (killed / "results.json").exists()
    epoch = torch.load(ckpt, weights_only=True)["epoch"]
    assert 5 <= epoch + 1 < 25
    resumed = run_cli(["hydra.run.dir=" + str(killed), *args, "trainer.enable_progress_bar=false"])
    assert f"seed 3: resuming from {ckpt}" in resumed.stdout + resumed.stderr
    check_completed(killed)
    straight = tmp_path / "straight"
    run_cli(["hydra.run.dir=" + str(straight), *args, "trainer.enable_progress_bar=false"])
    a, b = _final_state(killed, 3), _final_state(straight, 3)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_wandb_offline_run_holds_config_history_and_summary(run_cli, tmp_path):
    job = tmp_path / "job"
    run_cli([*[o for o in FAST if o != "logger=none"], "logger=wandb", f"hydra.run.dir={job}", "tags=[t1]"])
    check_completed(job)
    run = read_run(only(offline_runs(job)))
    assert run["run"]["project"] == "landscape_sweep" and run["run"]["job_type"] == "sgd"
    assert run["run"]["group"] == "job" and run["run"]["tags"] == ["t1"]
    assert run["config"]["model"]["depth"] == 2 and run["config"]["optimizer"]["name"] == "sgd"
    keys = set().union(*run["history"])
    assert {"seed0/train/loss", "seed1/train/loss", "seed0/final/test_acc"} <= keys
    assert {"test/acc", "train/loss", "gen_gap", "num_params"} <= set(run["summary"])
    assert run["exit_code"] == 0
    assert not (tmp_path / "wandb").exists()  # the run lives in the job dir

"""The real CLI: one cell, multiruns (basic and joblib), failure isolation, skip, resume after SIGKILL and SIGTERM,
W&B.

The CLI's `main(argv)` runs in this process (`run_main`; the joblib sweep's cells run in joblib's worker processes)
except where the process is the point: the runs killed by a signal. Those stop themselves at a chosen epoch
(tests/_support/gate.py), so the signal always lands mid-training, whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests._support import gate
from tests._support.cli import FAST, QUICK, check_completed, cli_env, only, run_in_process
from tests._support.wandb_offline import offline_runs, read_run

pytestmark = pytest.mark.slow


def test_single_cell_writes_results(run_main, tmp_path):
    run_main([*FAST, "trainer.checkpoint_every_s=3600"])
    job = only((tmp_path / "logs" / "landscape_sweep" / "runs").iterdir())
    r = check_completed(job)
    assert [e["seed"] for e in r["endpoints"]] == [0, 1]
    assert r["cell"]["dataset"] == "mnist1d" and r["cell"]["train_size"] == 512 and r["cell"]["num_params"] > 0
    assert (job / "checkpoints" / "seed0" / "final.pt").is_file()
    assert not (job / "checkpoints" / "seed0" / "last.ckpt").exists()  # a run shorter than checkpoint_every_s
    assert r["endpoints"][0]["train_loss"] != r["endpoints"][1]["train_loss"]  # different seeds, different nets
    assert list(tmp_path.iterdir()) == [tmp_path / "logs"]  # nothing else written into the working directory


def test_multirun_grid_and_report(run_main, tmp_path):
    sweep = tmp_path / "sweep"
    run_main(["-m", "model.depth=1,2", "optimizer=sgd,adam", f"hydra.sweep.dir={sweep}", *QUICK])
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert len(table) == 4 and set(table.status) == {"completed"}
    assert sorted(zip(table.depth, table.optimizer)) == [(1, "adam"), (1, "sgd"), (2, "adam"), (2, "sgd")]
    for col in ("num_params", "train_loss_mean", "train_loss_std", "test_acc_mean", "test_acc_std"):
        assert table[col].notna().all(), col
    assert (table[table.depth == 2].num_params.values > table[table.depth == 1].num_params.values).all()
    (sweep / "sweep_results.csv").unlink()
    out = run_main([str(sweep)], module="landscape_sweep.report")
    assert "completed" in out.stdout
    assert pd.read_csv(sweep / "sweep_results.csv").equals(table)


def test_joblib_launcher_runs_cells_in_parallel_processes(run_main, tmp_path):
    # the CLI's main in this process; the cells run in joblib's worker processes, ended (and waited for) at the end
    from joblib.externals.loky import reusable_executor

    sweep = tmp_path / "sweep"
    run_main(
        [
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "model.width=8,16",
            f"hydra.sweep.dir={sweep}",
            *[o for o in QUICK if not o.startswith("model.width")],
        ]
    )
    workers = reusable_executor._executor
    assert workers is not None and len(workers._processes) == 2  # two worker processes ran the cells
    workers.shutdown(wait=True)
    for job in ("0", "1"):
        check_completed(sweep / job)
    assert len(pd.read_csv(sweep / "sweep_results.csv")) == 2


def test_failed_cell_is_isolated_and_completed_cells_are_skipped(run_main, tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "data.train_size=256,100000",
        f"hydra.sweep.dir={sweep}",
        *[o for o in QUICK if "train_size" not in o],
    ]
    run_main(args)
    good = check_completed(sweep / "0")
    bad = json.loads((sweep / "1" / "results.json").read_text())
    assert bad["status"] == "failed" and "data.train_size" in bad["error"] and "100000" in bad["error"]
    assert "\n" not in bad["error"]
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert list(table.status) == ["completed", "failed"] and "data.train_size" in table.error[1]

    mtime = (sweep / "0" / "results.json").stat().st_mtime_ns
    again = run_main(args)
    assert "already completed" in again.stdout + again.stderr
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == mtime
    assert json.loads((sweep / "0" / "results.json").read_text()) == good


def _final_state(job: Path, seed: int) -> dict:
    return torch.load(job / "checkpoints" / f"seed{seed}" / "final.pt", weights_only=True)


# one endpoint (no pairs), 4 short epochs, the analysis cut to a minimum; one thread, so that the killed run, its
# resumption and the uninterrupted run round alike whatever else runs on the machine (trainer.threads=auto follows
# the live cell processes). checkpoint_every_s and threads are run-only keys: all share the training's identity
RESUME = [*[o for o in QUICK if not o.startswith("endpoints.seeds")], "endpoints.seeds=[3]", "trainer.max_epochs=4"]
RESUME += ["trainer.threads=1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir) -> Path:
    """The job dir of RESUME run straight through (the reference of both resume tests)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    proc = run_in_process([*RESUME, f"hydra.run.dir={root / 'job'}", f"paths.data_dir={data_dir}"], root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root / "job"


def _gated_run(tmp_path: Path, data_dir: Path, job: Path, args: list[str], epoch: int) -> subprocess.Popen:
    """RESUME + args as a CLI process that stops itself (SIGSTOP) after epoch `epoch` of seed 3."""
    env = gate.env(cli_env(tmp_path), tmp_path / "gate", "*/checkpoints/seed3", epoch)
    argv = [
        sys.executable,
        "-m",
        "landscape_sweep",
        *RESUME,
        *args,
        f"hydra.run.dir={job}",
        f"paths.data_dir={data_dir}",
    ]
    return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_resume_after_kill_matches_uninterrupted_run(run_main, tmp_path, data_dir, uninterrupted):
    killed = tmp_path / "killed"
    # last.ckpt after every epoch (Lightning writes checkpoints atomically: temp file + move)
    ckpt = killed / "checkpoints" / "seed3" / "last.ckpt"
    with gate.reaped(_gated_run(tmp_path, data_dir, killed, ["trainer.checkpoint_every_s=0"], epoch=2)) as proc:
        pid = gate.wait_stopped(tmp_path / "gate", alive=lambda: proc.poll() is None)
        assert ckpt.exists() and not (killed / "results.json").exists()  # stopped after epoch 2 of 4: mid-run
        os.kill(pid, signal.SIGKILL)  # no handler runs, nothing more is written
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (killed / "results.json").exists()
    assert torch.load(ckpt, weights_only=True)["epoch"] + 1 == 2
    resumed = run_main(["hydra.run.dir=" + str(killed), *RESUME, "trainer.checkpoint_every_s=0"])
    assert "resuming from" in resumed.stdout + resumed.stderr
    check_completed(killed)
    a, b = _final_state(killed, 3), _final_state(uninterrupted, 3)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_writes_the_last_finished_epoch_and_the_cell_resumes_from_it(
    run_main, tmp_path, data_dir, uninterrupted
):
    # last.ckpt only every hour: the one the resume uses can only come from the SIGTERM
    killed = tmp_path / "killed"
    ckpt = killed / "checkpoints" / "seed3" / "last.ckpt"
    with gate.reaped(_gated_run(tmp_path, data_dir, killed, ["trainer.checkpoint_every_s=3600"], epoch=2)) as proc:
        pid = gate.wait_stopped(tmp_path / "gate", alive=lambda: proc.poll() is None)
        assert not ckpt.exists()
        os.kill(pid, signal.SIGTERM)  # pending while the process is stopped: its handler runs once it continues
        os.kill(pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and not (killed / "results.json").exists(), out[-4000:]
    assert "seed 3: SIGTERM after epoch" in out, out[-4000:]
    epoch = torch.load(ckpt, weights_only=True)["epoch"]
    assert 2 <= epoch + 1 < 4, epoch
    resumed = run_main(["hydra.run.dir=" + str(killed), *RESUME])
    assert f"seed 3: resuming from {ckpt}" in resumed.stdout + resumed.stderr
    check_completed(killed)
    a, b = _final_state(killed, 3), _final_state(uninterrupted, 3)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_wandb_offline_run_holds_config_history_and_summary(run_main, tmp_path):
    job = tmp_path / "job"
    run_main([*[o for o in QUICK if o != "logger=none"], "logger=wandb", f"hydra.run.dir={job}", "tags=[t1]"])
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

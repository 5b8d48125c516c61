"""SLURM: launcher presets and real sweeps on a single-node localhost cluster.

The launcher's own logic (collecting every cell, its private-API wrappers) is tested without a cluster in
tests/hydra_plugins/test_launcher.py.

The cluster tests start `scripts/slurm-localhost.sh` when no cluster answers (CI starts it before the suite) and
are skipped, with the reason, only when it cannot start. The sweeps are submitted by the CLI's main in this process
(in a thread where the test acts while it runs) and `status` runs in-process too: what is tested is the SLURM jobs,
real processes started by the cluster. The cells the tests requeue and kill (one sweep, shared) stop themselves
after their first epoch (tests/_support/gate.py), so the test acts on a cell mid-training whatever the machine's
speed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tests._support import gate
from tests._support.cli import QUICK, REPO, cli_env, run_in_process
from tests._support.slurm import job_field, requeue, scancel_arrays, sh

SCRIPT = REPO / "scripts" / "slurm-localhost.sh"
SLURM_TMP = Path(os.environ.get("SLURM_TMP", "/tmp/slurm"))
TARGET = "hydra_plugins.landscape_sweep_launchers.SlurmLauncher"
# one CPU and 1 GB per cell, so two cells run side by side on a 2-core node
LAUNCH = [
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]
# two endpoints, two short epochs, the analysis cut to a minimum: the tests are about scheduling, not the measures
CELL = [o for o in QUICK if o != "logger=none"]
# last.ckpt after every epoch; the cell stops itself after epoch 1 of seed 0 (the gate), the test requeues or kills it
GATED = ["trainer.checkpoint_every_s=0"]
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


# --- presets (no cluster) ---


def test_presets_compose(compose_cfg, tmp_path):
    cpu = compose_cfg(["hydra/launcher=slurm"]).hydra.launcher
    assert cpu._target_ == TARGET and cpu.gpus_per_node is None and cpu.cpus_per_task == 4
    assert cpu.max_num_timeout > 0 and cpu.setup == [] and cpu.partition is None
    assert cpu.pending_timeout_min == 720
    gpu = compose_cfg(["hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu", "hydra.launcher.qos=high"])
    assert gpu.hydra.launcher._target_ == TARGET and gpu.hydra.launcher.gpus_per_node == 1
    assert (gpu.hydra.launcher.partition, gpu.hydra.launcher.qos) == ("gpu", "high")
    assert gpu.hydra.launcher.pending_timeout_min == 1440
    bounds = [compose_cfg(["hydra/launcher=slurm", f"hydra.launcher.pending_timeout_min={v}"]) for v in ("0.1", "null")]
    assert [b.hydra.launcher.pending_timeout_min for b in bounds] == [0.1, None]
    local = compose_cfg(["hydra/launcher=submitit_local"]).hydra.launcher
    assert local._target_.startswith("hydra_plugins.hydra_submitit_launcher")
    # site settings from conf/local/slurm.yaml (here: a search-path copy) land in the launcher node
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "slurm.yaml").write_text("partition: cpu_long\naccount: lab\nsetup: [module load x]\n")
    site = compose_cfg(["hydra/launcher=slurm", f"hydra.searchpath=[file://{tmp_path}]"]).hydra.launcher
    assert (site.partition, site.account, list(site.setup), site.cpus_per_task) == (
        "cpu_long",
        "lab",
        ["module load x"],
        4,
    )


# --- a real single-node cluster ---


@pytest.fixture
def cluster(slurm_cluster, tmp_path):
    """The running cluster; afterwards, the arrays this test submitted are cancelled (a failed test leaves none)."""
    yield
    scancel_arrays(tmp_path)


def _env(tmp_path: Path, sacct: bool = True) -> dict[str, str]:
    env = cli_env(tmp_path)
    if sacct:  # the sacct stand-in (no accounting database); without it the real sacct fails on every poll
        env["PATH"] = f"{SLURM_TMP / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def _args(data_dir: Path, args: list[str]) -> list[str]:
    return ["-m", *LAUNCH, *CELL, *args, f"paths.data_dir={data_dir}"]


def _sweep(tmp_path: Path, data_dir: Path, args: list[str], sacct: bool = True) -> subprocess.CompletedProcess:
    """The sweep submitted and waited for by the CLI's main in this process; its exit code and output."""
    proc = run_in_process(_args(data_dir, args), tmp_path, env=_env(tmp_path, sacct))
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout + proc.stderr)


def _running(run) -> bool:
    """True while the sweep's thread runs; its output (or its exception) once it ended."""
    if run.done():
        proc = run.result()
        raise AssertionError(f"the sweep ended (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    return True


def _finish(run, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = run.result(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout + proc.stderr)


def _sweep_dir(tmp_path: Path) -> Path:
    return next((tmp_path / "logs" / "landscape_sweep" / "multiruns").iterdir())


def _results(job_dir: Path) -> dict:
    return json.loads((job_dir / "results.json").read_text())


@pytest.mark.slow
def test_two_cell_sweep_on_slurm(cluster, tmp_path, data_dir):
    proc = _sweep(tmp_path, data_dir, ["model.depth=1,2"])
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    sweep = _sweep_dir(tmp_path)
    for i in (0, 1):
        r = _results(sweep / str(i))
        assert r["status"] == "completed" and r["cell"]["depth"] == i + 1, r.get("error")
        assert list((sweep / str(i) / "wandb").glob("offline-run-*")), "W&B must log offline into the job dir"
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert sorted(table["depth"]) == [1, 2] and set(table["status"]) == {"completed"}
    assert (sweep / "report.md").is_file()
    # the jobs ran the submitting interpreter (the venv), one SLURM array task per cell, one CPU each
    sbatch = next((sweep / ".submitit").glob(".submission_file_*.sh")).read_text()
    assert f"{sys.executable} -u -m submitit.core._submit" in sbatch and "#SBATCH --array=0-1" in sbatch
    assert "#SBATCH --cpus-per-task=1" in sbatch
    # the report can be rebuilt after the fact from the login node
    (sweep / "sweep_results.csv").unlink()
    rebuilt = run_in_process([str(sweep)], tmp_path, module="landscape_sweep.report", env=_env(tmp_path))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert pd.read_csv(sweep / "sweep_results.csv").equals(table)
    # an attached sweep records its jobs too: status names them once they have left the queue (the sweep returns
    # once their results are written: SLURM may still be ending them)
    jobs = [c["job_id"] for c in json.loads((sweep / "sweep.json").read_text())["cells"].values()]
    for job in jobs:
        _wait_job_end(job)
    status = run_in_process([str(sweep)], tmp_path, module="landscape_sweep.status", env=_env(tmp_path))
    assert len(jobs) == 2 and all(f"job {j} COMPLETED" in status.stdout for j in jobs), status.stdout
    assert status.stdout.splitlines()[-1].startswith("2/2 completed, 0 failed")


def _job(sweep: Path, cell: int) -> str:
    """The SLURM job (array task) of `cell`: its folder `.submitit/<array>_<cell>`."""
    (job,) = [d.name for d in (sweep / ".submitit").iterdir() if d.is_dir() and d.name.endswith(f"_{cell}")]
    return job


def _step_pid(job: str) -> int:
    """PID of the cell's Python process: task 0 of step 0 of the (array task's) SLURM job."""
    rows = [r.split() for r in sh("scontrol", "listpids", job_field(job, "JobId")).stdout.splitlines()[1:]]
    pids = [int(r[0]) for r in rows if len(r) >= 4 and r[2] == "0" and r[3] == "0"]
    assert pids, rows
    return pids[0]


# two cells stopped by the gate after their first epoch: cell 0 is requeued, cell 1 killed. 4 epochs: the requeued
# cell, SIGTERMed while stopped, writes its last finished epoch to last.ckpt and the requeued job resumes from it.
# No W&B: the requeue's SIGTERM reaches the W&B service too, and the cell fails on its lost connection instead of
# resuming (see the report of this change)
# (a SIGTERM acted on one one-batch epoch late, as EpochAsBatch can, still leaves an unfinished last.ckpt)
INTERRUPTED = ["logger=none", "trainer.max_epochs=4"]


@pytest.fixture(scope="module")
def interrupted_sweep(slurm_cluster, tmp_path_factory, data_dir) -> SimpleNamespace:
    """A two-cell sweep (model.depth=1,2) whose cell 0 is requeued and cell 1 SIGKILLed, each mid-training."""
    root = tmp_path_factory.mktemp("interrupted")
    env = gate.env(_env(root), root / "gate", "*/multiruns/*/[01]/checkpoints/seed0", 1)
    args = _args(data_dir, [*GATED, *INTERRUPTED, "model.depth=1,2"])
    with ThreadPoolExecutor(1) as pool:  # the CLI's main submits and waits in this thread, the test acts meanwhile
        run = pool.submit(run_in_process, args, root, env=env)
        try:
            # cell 0 first (a 1-CPU node runs cell 1 only after it): the SIGTERM a requeue sends, pending in the
            # stopped cell before SLURM continues it (SIGCONT comes first: the cell would train on until the SIGTERM
            # arrives, maybe to its end), then the requeue, which starts it again at once (SLURM would hold it)
            pid = gate.wait_stopped(root / "gate", "*/0/checkpoints/seed0", alive=lambda: _running(run))
            sweep = _sweep_dir(root)
            requeued = _job(sweep, 0)
            os.kill(pid, signal.SIGTERM)
            requeue(requeued)
            pid = gate.wait_stopped(root / "gate", "*/1/checkpoints/seed0", alive=lambda: _running(run))
            killed = _job(sweep, 1)
            step_pid = _step_pid(killed)
            os.kill(pid, signal.SIGKILL)  # no Python exception, no result pickle: as the OOM killer would
            killed_at = time.time()
            proc = _finish(run, timeout=600)
            ended = time.time()
        finally:
            if not run.done():
                scancel_arrays(root)
    return SimpleNamespace(
        sweep=sweep, proc=proc, requeued=requeued, killed=killed, pid=pid, step_pid=step_pid, killed_at=killed_at,
        ended=ended,
    )  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted_cell(tmp_path_factory, data_dir) -> dict:
    """results.json of the requeued cell run straight through, in this process, on the one thread a 1-CPU SLURM
    task gives it (trainer.threads=auto); threads is a run-only key."""
    root = tmp_path_factory.mktemp("uninterrupted")
    args = [*CELL, *GATED, *INTERRUPTED, "model.depth=1", "trainer.threads=1", f"paths.data_dir={data_dir}"]
    proc = run_in_process([*args, f"hydra.run.dir={root / 'job'}"], root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return _results(root / "job")


@pytest.mark.slow
def test_requeued_cell_resumes_to_the_same_result(interrupted_sweep, uninterrupted_cell):
    # cell 0, requeued after its first epoch; the reference is the same cell run straight through
    sweep, job = interrupted_sweep.sweep, interrupted_sweep.requeued
    ckpt = sweep / "0" / "checkpoints" / "seed0" / "last.ckpt"
    assert job_field(job, "Restarts") == "1"
    logs = "".join(p.read_text() for p in (sweep / ".submitit" / job).glob("*_log.*"))
    assert f"seed 0: resuming from {ckpt}" in logs, logs[-4000:]
    ref, requeued = uninterrupted_cell, _results(sweep / "0")
    assert requeued["status"] == "completed" and requeued["config_hash"] == ref["config_hash"]
    for a, b in zip(ref["endpoints"], requeued["endpoints"]):
        assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}
        assert a["epochs"] == b["epochs"] == 4
    assert [c["loss_barrier"] for c in ref["connectivity"]] == [c["loss_barrier"] for c in requeued["connectivity"]]
    # the requeue failed nothing: the sweep's errors are the killed cell's
    out = interrupted_sweep.proc.stdout
    errors = [line for line in out.splitlines() if " ended without a result " in line or " failed: " in line]
    assert errors and all(f"SLURM job {interrupted_sweep.killed} " in line for line in errors), out[-4000:]
    assert f"SLURM job {job}" not in out


@pytest.mark.slow
def test_killed_cell_fails_the_sweep_without_hanging(interrupted_sweep):
    sweep, job, proc = interrupted_sweep.sweep, interrupted_sweep.killed, interrupted_sweep.proc
    out = proc.stdout
    assert interrupted_sweep.step_pid == interrupted_sweep.pid  # the killed process was the job's task
    # no hang: the sweep ends within a minute of the kill or, when the live cell is still training, of its end
    last = max(interrupted_sweep.killed_at, (sweep / "0" / "results.json").stat().st_mtime)
    assert interrupted_sweep.ended - last < 60, "the sweep must end within a minute of the kill and the live cell's end"
    assert proc.returncode != 0
    assert f"SLURM job {job} ended without a result (state FAILED)" in out, out[-4000:]
    assert "has not produced any output" in out
    assert "model.depth=2" in out.split(f"SLURM job {job}")[0].rsplit("cell #1", 1)[1]
    assert _results(sweep / "0")["status"] == "completed"
    assert not (sweep / "1" / "results.json").exists()
    table = pd.read_csv(sweep / "sweep_results.csv").set_index("job")
    assert table.loc[0, "status"] == "completed" and table.loc[1, "status"] == "missing"
    assert (sweep / "report.md").is_file()


# --- requests that can never start, and waits that never end ---


def _node(field: str) -> int:
    """The local node's CPUs (`%c`) or memory in MB (`%m`)."""
    return int(sh("sinfo", "-h", "-o", field).stdout.split()[0].rstrip("+"))


def _since_submission(out: str) -> float:
    """Seconds from the launcher's `submitted N jobs` log line to now."""
    stamp = re.search(r"^\[([\d-]+ [\d:]+,\d+)\]\[[^]]*\] submitted \d+ jobs", out, re.M)
    assert stamp, out[-4000:]
    return (datetime.now() - datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")).total_seconds()


def _error_line(pattern: str, out: str) -> re.Match:
    found = re.search(f"^{pattern}$", out, re.M)
    assert found, out[-4000:]
    return found


@pytest.mark.slow
def test_a_request_no_node_can_meet_is_cancelled_in_one_line(cluster, tmp_path, data_dir):
    cpus = max(64, 2 * _node("%c"))
    # no sacct stand-in: the real sacct fails on every poll, and is logged once
    proc = _sweep(tmp_path, data_dir, [f"hydra.launcher.cpus_per_task={cpus}", "model.depth=1,2"], sacct=False)
    out = proc.stdout
    assert proc.returncode == 1, out[-4000:]
    assert _since_submission(out) < 30, "a request that can never start must end the sweep within 30 s"
    error = _error_line(
        rf"hydra\.launcher\.cpus_per_task={cpus}: job (\d+)_\[0-1\] can never start \(PartitionConfig\): "
        rf"partition debug has nodes with at most {_node('%c')} CPUs; the array was cancelled",
        out,
    )
    assert sh("squeue", "-h", "-j", error.group(1)).stdout.strip() == "", "the array must be cancelled"
    assert out.count("Bypassing sacct error") <= 1 and out.count("further sacct errors are not logged") <= 1
    assert "Traceback" not in out


@pytest.mark.slow
def test_pending_timeout_cancels_an_array_that_waits_too_long(cluster, tmp_path, data_dir):
    held = ["+hydra.launcher.additional_parameters.begin=now+1hour", "hydra.launcher.pending_timeout_min=0.1"]
    proc = _sweep(tmp_path, data_dir, [*held, "model.depth=1,2"])
    out = proc.stdout
    assert proc.returncode == 1, out[-4000:]
    assert 6 <= _since_submission(out) < 30
    error = _error_line(
        r"hydra\.launcher\.pending_timeout_min=0\.1: job (\d+)_\[0-1\] pended 0\.\d min with no cell running "
        r"\(BeginTime, partition debug\); the array was cancelled",
        out,
    )
    assert sh("squeue", "-h", "-j", error.group(1)).stdout.strip() == "", "the array must be cancelled"
    sbatch = next((_sweep_dir(tmp_path) / ".submitit").glob(".submission_file_*.sh")).read_text()
    assert "#SBATCH --begin=now+1hour" in sbatch


@pytest.mark.slow
def test_a_request_sbatch_rejects_fails_in_one_line(cluster, tmp_path, data_dir):
    mem_gb = 2 * _node("%m") // 1024 + 1
    proc = _sweep(tmp_path, data_dir, [f"hydra.launcher.mem_gb={mem_gb}", "model.depth=1,2"])
    out = proc.stdout
    assert proc.returncode == 1, out[-4000:]
    _error_line(
        rf"hydra\.launcher \(partition=None, cpus_per_task=1, mem_gb={mem_gb}, gpus_per_node=None, timeout_min=10, "
        r"constraint=None, qos=None, account=None\): slurm rejected the array: Memory specification can not be "
        r"satisfied; .*",
        out,
    )


# --- detached sweeps: submit, walk away, follow with status, finish with resubmit ---


def _cli(tmp_path: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m <module> args` from tmp_path: in this process; resubmit in a subprocess (it runs the sweep's
    command as a child process, whose output is part of what the test reads)."""
    if module != "landscape_sweep.resubmit":
        return run_in_process(list(args), tmp_path, module=module, env=_env(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def _wait_job_end(job: str, timeout: float = 400) -> None:
    """Wait until the scheduler no longer runs or holds `job`."""
    from landscape_sweep.scheduler import job_states

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = job_states([job]).get(job)
        if state is None or not state.active:
            return
        time.sleep(1)
    raise AssertionError(f"job {job} still {state} after {timeout} s")


def _states(status_out: str) -> dict[int, str]:
    return {int(ln.split()[0][1:]): ln.split()[1] for ln in status_out.splitlines() if ln.startswith("#")}


@pytest.mark.slow
def test_a_detached_sweep_reports_on_the_cluster_and_resubmit_finishes_a_killed_cell(cluster, tmp_path, data_dir):
    # the array is submitted held (`sbatch --hold`), so no cell can run before the test says so: what the test sees
    # never depends on how fast the machine trains a cell (a 2-epoch cell once finished before scancel reached it)
    held = "+hydra.launcher.additional_parameters.hold=true"
    cells = ["logger=none", "model.depth=1,2", held]
    proc = _sweep(tmp_path, data_dir, ["hydra.launcher.detach=true", *cells])
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    sweep = _sweep_dir(tmp_path)
    report_job = re.search(r"Report job (\d+):", out).group(1)
    assert f"Sweep dir: {sweep}" in out and "Submitted 2 cells as SLURM array" in out
    assert f"python -m landscape_sweep.status {sweep}" in out and f"python -m landscape_sweep.resubmit {sweep}" in out
    manifest = json.loads((sweep / "sweep.json").read_text())
    jobs = {int(n): c["job_id"] for n, c in manifest["cells"].items()}
    assert sorted(jobs) == [0, 1] and manifest["submissions"][0]["report_job"] == report_job
    # returned before any cell ran: no results, every cell pending (held), the report job waiting on them
    first = _cli(tmp_path, "landscape_sweep.status", str(sweep))
    assert first.returncode == 0, first.stderr
    assert set(_states(first.stdout).values()) == {"pending"}, first.stdout
    assert f"report job {report_job}: PENDING (Dependency)" in first.stdout
    # cell 1 is cancelled while still held, so it never runs: cancelling a running (or suspended: scancel continues
    # it first) cell sends SIGTERM, which submitit passes over, and a small cell could finish within SLURM's KillWait
    # (it did, in a clean-clone CI run); then the other cell is released
    assert sh("scancel", jobs[1]).returncode == 0
    assert sh("scontrol", "release", jobs[0]).returncode == 0
    _wait_job_end(report_job)  # nobody waits on the login node: the report job writes the report
    table = pd.read_csv(sweep / "sweep_results.csv").set_index("job")
    assert table.loc[0, "status"] == "completed" and table.loc[1, "status"] == "missing"
    assert (sweep / "report.md").is_file()
    after = _cli(tmp_path, "landscape_sweep.status", str(sweep)).stdout
    assert _states(after) == {0: "completed", 1: "missing"}, after  # cancelled before it ran: no results, no job
    assert f"report job {report_job}: COMPLETED" in after
    assert after.splitlines()[-1].startswith("1/2 completed, 0 failed") and "1 missing" in after.splitlines()[-1]
    # resubmit: only cell 1, with a new report job, and it returns at once too
    again = _cli(tmp_path, "landscape_sweep.resubmit", str(sweep))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resubmitting 1 of 2 cells: #1 (missing)" in again.stdout and "Submitted 1 cells" in again.stdout
    assert "Not submitted: 1 completed, 0 still queued" in again.stdout
    second = re.search(r"Report job (\d+):", again.stdout).group(1)
    resubmitted = json.loads((sweep / "sweep.json").read_text())["cells"]["1"]["job_id"]
    assert resubmitted != jobs[1] and sh("scontrol", "release", resubmitted).returncode == 0  # the command holds it
    _wait_job_end(second)
    final = _cli(tmp_path, "landscape_sweep.status", str(sweep)).stdout
    assert _states(final) == {0: "completed", 1: "completed"}, final
    assert final.splitlines()[-1].startswith("2/2 completed, 0 failed")
    assert set(pd.read_csv(sweep / "sweep_results.csv")["status"]) == {"completed"}

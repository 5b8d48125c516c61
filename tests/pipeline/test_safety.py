"""Nothing lost, ever: concurrent runs of one cell, an unreadable final.pt, file modes, nothing written elsewhere.

The CLI tests run `python -m landscape_sweep`: in subprocesses where processes are the point (two at once for the
concurrency test; the W&B run whose every file write is audited), else in this process (`run_main`); the lock and
file-mode helpers are also checked directly, where it takes milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from landscape_sweep.files import atomic_write_text, new_file_mode
from landscape_sweep.pipeline.artifacts import LOCK_NAME, STALE_ENV, CellLock, lock_stale_after
from landscape_sweep.report.table import ResultsCache
from tests._support import gate
from tests._support.cli import QUICK as CLI_QUICK
from tests._support.cli import check_completed, cli_env

QUICK = [*CLI_QUICK, "trainer.checkpoint_every_s=0"]  # last.ckpt after every epoch, as some tests expect


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _cli(args: list[str], cwd: Path, env: dict[str, str], log: Path, **kw) -> subprocess.Popen:
    """Start `python -m landscape_sweep args` with stdout and stderr into `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "landscape_sweep", *args], cwd=cwd, env=env, stdout=out, stderr=out, **kw
        )


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 900) -> str:
    """Wait for `proc`; its output, asserted to have exited 0."""
    proc.wait(timeout=timeout)
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    return text


# --- in-process: the lock and file modes -----------------------------------------------------------------------
def _write_lock(job: Path, **owner) -> Path:
    info = {"pid": 1, "host": socket.gethostname(), "started": "then", "proc_start": None, "token": "theirs"}
    path = job / LOCK_NAME
    path.write_text(json.dumps({**info, **owner}))
    return path


def test_lock_is_exclusive_until_released(tmp_path):
    first, second = CellLock(tmp_path), CellLock(tmp_path)
    assert first.acquire()
    assert not second.acquire()
    assert f"pid {os.getpid()} on {socket.gethostname()}" in second.holder
    assert stat.S_IMODE((tmp_path / LOCK_NAME).stat().st_mode) == new_file_mode()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    assert second.acquire()
    second.release()


def test_lock_of_a_dead_process_on_this_host_is_broken(tmp_path, caplog):
    _write_lock(tmp_path, pid=_dead_pid())
    lock = CellLock(tmp_path)
    assert lock.acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == lock.me["token"]
    assert "breaking the stale lock" in caplog.text
    lock.release()
    assert list(tmp_path.iterdir()) == []  # nothing left aside


def test_lock_of_a_live_process_is_kept_but_not_that_of_a_reused_pid(tmp_path):
    path = _write_lock(tmp_path, pid=os.getpid(), proc_start=None)
    assert not CellLock(tmp_path).acquire()
    path.write_text(json.dumps({**json.loads(path.read_text()), "proc_start": -1}))  # same pid, other process
    lock = CellLock(tmp_path)
    assert lock.acquire()
    lock.release()


def test_lock_of_another_host_is_stale_after_its_heartbeat_stops(tmp_path):
    path = _write_lock(tmp_path, host="elsewhere", pid=os.getpid())
    assert not CellLock(tmp_path, stale_after=60).acquire()
    old = time.time() - 120
    os.utime(path, (old, old))
    lock = CellLock(tmp_path, stale_after=60)
    assert lock.acquire()
    time.sleep(0.3)  # heartbeat every stale_after / 4 (at least 0.05 s)
    lock.release()
    beating = CellLock(tmp_path, stale_after=0.2)
    assert beating.acquire()
    taken, end = path.stat().st_mtime_ns, time.monotonic() + 60
    while path.stat().st_mtime_ns == taken:  # refreshed while held (every 0.05 s; waited for, however busy)
        assert time.monotonic() < end, "the lock's heartbeat never refreshed it"
        time.sleep(0.05)
    beating.release()


def test_lock_of_an_earlier_run_of_this_requeued_slurm_job_is_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    _write_lock(tmp_path, host="node1", pid=os.getpid(), slurm_job="77", slurm_restart=1)
    assert not CellLock(tmp_path).acquire()  # same run of the job (e.g. two sweeps in one allocation)
    _write_lock(tmp_path, host="node1", pid=os.getpid(), slurm_job="77", slurm_restart=0)
    lock = CellLock(tmp_path)
    assert lock.acquire()
    lock.release()


def test_lock_stale_after_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(STALE_ENV, raising=False)
    assert lock_stale_after() == 600
    monkeypatch.setenv(STALE_ENV, "30")
    assert lock_stale_after() == 30
    monkeypatch.setenv(STALE_ENV, "soon")
    with pytest.raises(ValueError, match=f"^{STALE_ENV}='soon': must be a finite number > 0$"):
        lock_stale_after()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_writes_get_the_mode_of_a_new_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask
    finally:
        os.umask(old)
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


# --- through the CLI -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_identical_sweeps_at_once_run_every_cell_once(run_main, tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    args = ["-m", "model.depth=1,2", f"hydra.sweep.dir={sweep}", *QUICK]
    # the first sweep (a process) stops itself in the middle of cell 0, holding its lock, after seed 0's first epoch
    log = tmp_path / "first.log"
    env = gate.env(cli_env(tmp_path), tmp_path / "gate", f"{sweep / '0' / 'checkpoints' / 'seed0'}", 1)
    with gate.reaped(_cli([*args, f"paths.data_dir={data_dir}"], tmp_path, env, log)) as first:
        pid = gate.wait_stopped(tmp_path / "gate", alive=lambda: first.poll() is None)
        second = run_main(args)  # meanwhile the same sweep in this process: cell 0 is locked by a live process
        os.kill(pid, signal.SIGCONT)
        text = _finish(first, log) + second.stdout + second.stderr
    for job in (sweep / "0", sweep / "1"):
        results = check_completed(job)
        for seed in (0, 1):  # each endpoint trained by exactly one process, never resumed from the other's files
            assert text.count(f"seed {seed}: training in {job / 'checkpoints' / f'seed{seed}'}\n") == 1, text
            assert torch.load(job / results["endpoints"][seed]["checkpoint"], weights_only=True)
        assert not (job / LOCK_NAME).exists()
    assert "resuming from" not in text and "cell failed" not in text
    # each process visits both cells and runs one: the other it finds locked, or completed once the lock is free
    assert text.count("is being run by ") + text.count("cell already completed") == 2, text
    assert f"cell {sweep / '0'} is being run by pid {pid} " in second.stdout + second.stderr  # the stopped one
    hidden = [p for p in sweep.rglob(".*") if p.is_file() and p.parent.name != ".hydra"]
    assert hidden == [sweep / ResultsCache.NAME]  # the report's results cache; no temp files left


@pytest.mark.slow
def test_unreadable_final_pt_and_stale_lock_of_a_killed_run_are_recovered(run_main, tmp_path):
    job = tmp_path / "job"
    run_main([*QUICK, f"hydra.run.dir={job}"])
    final = job / "checkpoints" / "seed1" / "final.pt"
    before = torch.load(final, weights_only=True)
    final.write_bytes(final.read_bytes()[: final.stat().st_size // 2])  # a kill or a full disk mid-write
    _write_lock(job, pid=_dead_pid())
    out = run_main([*QUICK, f"hydra.run.dir={job}", "landscape.connectivity.num_points=7"])  # not skipped: re-analysed
    text = out.stdout + out.stderr
    assert f"ignoring unreadable endpoint {final} (" in text, text
    assert f"breaking the stale lock {job / LOCK_NAME}" in text
    assert f"reusing finished endpoint {job / 'checkpoints' / 'seed0' / 'final.pt'}" in text
    assert f"seed 1: training in {final.parent}\n" in text  # afresh, not from the finished run's last.ckpt
    results = check_completed(job)
    assert len(results["connectivity"][0]["t"]) == 7
    after = torch.load(final, weights_only=True)  # same seed on CPU: the very same network again
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in after)
    assert not (job / LOCK_NAME).exists()


@pytest.mark.slow
def test_every_output_file_has_the_mode_the_umask_gives(run_main, tmp_path):
    sweep = tmp_path / "sweep"
    old = os.umask(0o022)
    try:
        run_main(["-m", f"hydra.sweep.dir={sweep}", *QUICK])
    finally:
        os.umask(old)
    job, ck = sweep / "0", sweep / "0" / "checkpoints" / "seed0"
    named = [job / "results.json", job / "curves.csv", job / "connectivity.png", ck / "final.pt", ck / "last.ckpt"]
    named += [ck / "final.json", sweep / "report.md", sweep / "sweep_results.csv"]
    named += list((sweep / "figures").glob("*.png"))
    assert len(named) > 8 and all(p.is_file() for p in named)
    assert {p: oct(stat.S_IMODE(p.stat().st_mode)) for p in named} == dict.fromkeys(named, "0o644")
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in sweep.rglob("*") if p.is_file()}
    assert {p: oct(m) for p, m in modes.items() if m & 0o644 != 0o644} == {}  # every file readable by all


# sitecustomize of the CLI process: records every file Python opens for writing under AUDIT_ROOT, except W&B's own
# transient serialisation files (moved into the run dir, or removed, before the run ends)
AUDIT = """
import atexit, json, os, sys, tempfile
tempfile.gettempdir()  # its writability probe in TMPDIR happens now, before the hook
ROOT, LOG, seen = os.environ["AUDIT_ROOT"] + os.sep, os.environ["AUDIT_LOG"], []
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND
WANDB = os.sep + "wandb" + os.sep

def by_wandb():
    frame = sys._getframe(2)
    while frame is not None:
        if WANDB in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False

def hook(event, args):
    if event != "open" or isinstance(args[0], int) or args[0] is None:
        return
    mode, flags = args[1], args[2] if len(args) > 2 else 0
    writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE)
    path = os.path.abspath(os.fsdecode(os.fspath(args[0])))
    if writes and path.startswith(ROOT) and not by_wandb():
        seen.append(path)

def dump():
    with open(LOG, "w") as f:
        json.dump(seen, f)

atexit.register(dump)
sys.addaudithook(hook)
"""


@pytest.mark.slow
def test_wandb_cell_writes_nothing_outside_its_job_dir(tmp_path, data_dir):
    iso = tmp_path / "iso"  # HOME, TMPDIR and the XDG dirs of the run
    dirs = {k: iso / k.lower() for k in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    for d in dirs.values():
        d.mkdir(parents=True)
    site, shared = tmp_path / "site", tmp_path / "shared"  # shared: library caches that are no run's files
    site.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT)
    env = {**cli_env(tmp_path), **{k: str(v) for k, v in dirs.items()}}
    env.update(
        MPLCONFIGDIR=str(shared / "matplotlib"), TORCHINDUCTOR_CACHE_DIR=str(shared / "inductor"),
        LANDSCAPE_SWEEP_THREADS_DIR=str(shared / "threads"),  # the machine's registry of cell processes (threads)
        AUDIT_ROOT=str(iso), AUDIT_LOG=str(tmp_path / "audit.json"),
        PYTHONPATH=os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p),
    )  # fmt: skip
    for k in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR", "WANDB_CONFIG_DIR"):
        env.pop(k, None)
    job, log = tmp_path / "job", tmp_path / "out.log"
    args = [*(o for o in QUICK if o != "logger=none"), "logger=wandb", f"hydra.run.dir={job}"]
    _finish(_cli([*args, f"paths.data_dir={data_dir}"], tmp_path, env, log), log)
    check_completed(job)
    assert json.loads((tmp_path / "audit.json").read_text()) == []  # not even a temp file moved in later
    assert sorted(p for p in iso.rglob("*")) == sorted(dirs.values())  # nothing left behind either
    staged = list((job / "wandb" / "data" / "artifacts" / "staging").iterdir())
    assert staged  # the tables an offline run refers to until `wandb sync`: kept with the run


@pytest.mark.slow
def test_kill_after_the_last_epoch_retrains_instead_of_resuming_a_finished_run(compose_cfg, tmp_path):
    """A kill between the last epoch's last.ckpt and final.pt: resuming would skip the end of fit (the SWA
    average), so the endpoint trains again and ends with the same weights as the uninterrupted run."""
    import torch

    from landscape_sweep.pipeline.cell import run_cell

    cfg = compose_cfg(
        ["logger=none", "optimizer=swa", "trainer.max_epochs=3", "data.train_size=256", "model.width=16",
         "endpoints.seeds=[0]", "trainer.enable_progress_bar=false", "landscape=fast",
         "landscape.connectivity.methods=[linear]", "trainer.checkpoint_every_s=0"]
    )  # fmt: skip
    job = tmp_path / "job"
    assert run_cell(cfg, job).status == "completed"
    ck = job / "checkpoints" / "seed0"
    done = torch.load(ck / "final.pt", weights_only=True)
    assert (ck / "last.ckpt").is_file()
    for name in ("final.pt", "final.json"):
        (ck / name).unlink()
    (job / "results.json").unlink()
    assert run_cell(cfg, job).status == "completed"
    again = torch.load(ck / "final.pt", weights_only=True)
    assert all(torch.equal(done[k], again[k]) for k in done)


# --- a job dir's completed results are never overwritten by another config, whatever the flags -----------------
TINY = ["logger=none", "trainer.max_epochs=1", "data.train_size=256", "endpoints.seeds=[0]",
        "trainer.enable_progress_bar=false", "landscape=fast", "landscape.connectivity.methods=[linear]"]  # fmt: skip


def _completed(compose_cfg, job: Path, overrides: list[str]) -> bytes:
    """A completed results.json of the config `overrides` in `job` (as a finished cell leaves it); its bytes."""
    from landscape_sweep.pipeline.cell import new_result
    from landscape_sweep.pipeline.config import validate
    from landscape_sweep.results import write_results

    result = new_result(validate(compose_cfg(overrides)))
    result.status = "completed"
    write_results(job, result)
    return (job / "results.json").read_bytes()


def test_a_cell_refuses_a_job_dir_completed_for_another_config(compose_cfg, tmp_path):
    """The guard holds inside the cell, under its lock: the cell is refused (one line naming the dir and the
    differing keys), nothing is trained or written, the results stay."""
    from landscape_sweep.pipeline.cell import run_cell

    job = tmp_path / "job"
    before = _completed(compose_cfg, job, [*TINY, "model.width=32"])
    result = run_cell(compose_cfg([*TINY, "model.width=24"]), job)
    assert result.status == "refused", result.error
    assert "\n" not in result.error and f"job dir {job} " in result.error and "model.width: 32 -> 24" in result.error
    assert (job / "results.json").read_bytes() == before
    assert sorted(p.name for p in job.iterdir()) == ["results.json"]  # no checkpoints, no lock left
    # only the analysis changes: the job dir is the cell's (it is re-analysed)
    again = run_cell(compose_cfg([*TINY, "model.width=32", "landscape.connectivity.num_points=5"]), job)
    assert again.status == "completed", again.error


def test_a_config_error_inside_a_cell_never_overwrites_completed_results(compose_cfg, tmp_path, caplog):
    from landscape_sweep.pipeline.cell import run_cell

    bad = compose_cfg([*TINY, "model.width=32", "optimizer.lr=-1"])  # composed, then refused by the validation
    job = tmp_path / "job"
    before = _completed(compose_cfg, job, [*TINY, "model.width=32"])
    result = run_cell(bad, job)
    assert result.status == "refused" and result.error.startswith("ConfigError: optimizer.lr=-1"), result.error
    assert "not recorded" in result.error and (job / "results.json").read_bytes() == before
    fresh = tmp_path / "fresh"  # no completed results there: the failure is recorded as before
    assert run_cell(bad, fresh).status == "failed"
    assert json.loads((fresh / "results.json").read_text())["error"].startswith("ConfigError: optimizer.lr=-1")


def test_a_cell_locked_by_another_config_is_refused_and_by_the_same_skipped(compose_cfg, tmp_path):
    from landscape_sweep.pipeline.cell import cell_identity, run_cell
    from landscape_sweep.pipeline.config import validate

    job = tmp_path / "job"
    theirs = CellLock(job, identity=cell_identity(validate(compose_cfg([*TINY, "model.width=32"]))))
    assert theirs.acquire()
    try:
        other = run_cell(compose_cfg([*TINY, "model.width=24"]), job)
        assert other.status == "refused" and "model.width: 32 -> 24" in other.error and "being run by" in other.error
        same = run_cell(compose_cfg([*TINY, "model.width=32"]), job)
        assert same.status == "locked", same.error
    finally:
        theirs.release()
    assert list(job.iterdir()) == []


@pytest.mark.slow
def test_hydra_flags_do_not_bypass_the_guard(run_main, tmp_path):
    """`--config-name` (any flag but -m) skips the pre-check; the cell still refuses, the command fails naming it."""
    sweep = tmp_path / "sweep"
    base = ["-m", f"hydra.sweep.dir={sweep}", *TINY]
    run_main([*base, "model.width=16"])
    before = (sweep / "0" / "results.json").read_bytes()
    proc = run_main(["--config-name", "config", *base, "model.width=24"], check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert f"job dir {sweep / '0'} " in text and "model.width: 16 -> 24" in text, text[-3000:]
    assert (sweep / "0" / "results.json").read_bytes() == before


@pytest.mark.slow
def test_two_sweeps_of_different_configs_into_one_dir_never_mix(run_main, tmp_path, data_dir):
    """Two sweeps of different configs into one sweep dir at once: the one holding the first cell runs every cell,
    the other is refused at its first cell and runs none (exit != 0, naming the dir and the differing key); no cell
    holds the other config's results. Made certain: the first sweep (a process) stops itself in the middle of cell
    0, holding its lock, while the second runs in this process."""
    sweep = tmp_path / "sweep"
    quick = [a for a in QUICK if not a.startswith("model.width=")]
    runs = {w: ["-m", "model.depth=1,2", f"model.width={w}", f"hydra.sweep.dir={sweep}", *quick] for w in (16, 24)}
    log = tmp_path / "w16.log"
    env = gate.env(cli_env(tmp_path), tmp_path / "gate", f"{sweep / '0' / 'checkpoints' / 'seed0'}", 1)
    with gate.reaped(_cli([*runs[16], f"paths.data_dir={data_dir}"], tmp_path, env, log)) as first:
        pid = gate.wait_stopped(tmp_path / "gate", alive=lambda: first.poll() is None)
        second = run_main(runs[24], check=False)
        os.kill(pid, signal.SIGCONT)
        codes = {16: first.wait(timeout=900), 24: second.returncode}
    texts = {16: log.read_text(), 24: second.stdout + second.stderr}
    assert sorted(c == 0 for c in codes.values()) == [False, True], (codes, texts)
    winner = next(w for w, c in codes.items() if c == 0)
    loser = next(w for w in runs if w != winner)
    assert "refused" in texts[loser] and f"model.width: {winner} -> {loser}" in texts[loser], texts[loser][-3000:]
    assert "training in" not in texts[loser], texts[loser][-3000:]
    for job in (sweep / "0", sweep / "1"):
        assert check_completed(job)["cell"]["width"] == winner

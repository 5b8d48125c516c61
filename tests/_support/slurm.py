"""The single-node localhost SLURM cluster of the tests (`scripts/slurm-localhost.sh`) and a few job queries."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests._support.cli import REPO, cli_env

SCRIPT = REPO / "scripts" / "slurm-localhost.sh"
SLURM_TMP = Path(os.environ.get("SLURM_TMP", "/tmp/slurm"))


def sh(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command, capturing its output."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def start() -> tuple[bool, str | None]:
    """Make sure a cluster answers: (whether it was started here, why it cannot start or None)."""
    if sh("bash", str(SCRIPT), "status").returncode == 0:
        return False, None
    try:
        p = sh("bash", str(SCRIPT), "start", timeout=600)
    except subprocess.TimeoutExpired:
        return False, "SLURM cluster did not start within 600 s"
    if p.returncode != 0:
        return False, "SLURM cluster cannot start: " + (p.stderr.strip().splitlines() or ["no output"])[-1]
    return True, None


def stop() -> None:
    """Stop the daemons `start` started."""
    sh("bash", str(SCRIPT), "stop")


def env(root: Path) -> dict[str, str]:
    """The CLI's environment with the `sacct` stand-in first on PATH (no accounting database on this cluster)."""
    e = cli_env(root)
    e["PATH"] = f"{SLURM_TMP / 'bin'}{os.pathsep}{e['PATH']}"
    return e


def job_field(job: str, key: str) -> str:
    """One field of `scontrol show job` (JobState, Restarts, ...), '' when absent."""
    fields = dict(f.split("=", 1) for f in sh("scontrol", "-o", "show", "job", job).stdout.split() if "=" in f)
    return fields.get(key, "")


def scancel_arrays(root: Path) -> None:
    """Cancel every array a sweep under `root` submitted (its `.submitit/<array>_<task>` dirs): a failed test
    leaves nothing queued or running."""
    arrays = {d.name.split("_")[0] for d in root.rglob(".submitit/*") if d.is_dir()}
    if arrays:
        sh("scancel", *sorted(arrays))


def requeue(job: str, timeout: float = 60) -> None:
    """`scontrol requeue` a running job and start it again at once (SLURM holds a requeued job ~2 min)."""
    assert sh("scontrol", "requeue", job).returncode == 0
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = job_field(job, "JobState")
        if state == "PENDING":
            sh("scontrol", "update", f"JobId={job}", "StartTime=now")
        elif state in ("RUNNING", "COMPLETED") and job_field(job, "Restarts") == "1":
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job} did not restart within {timeout} s")

"""A gate for the tests that act on a cell while it trains: the cell's process stops itself (SIGSTOP) right after
a chosen epoch of a chosen endpoint, so the test acts on a known state, whatever the machine's speed.

`env(base, gate_dir, match, epoch)` returns a CLI environment whose Python processes (the CLI, its joblib or
submitit workers, SLURM jobs: they inherit it) load `gate_site/sitecustomize.py`. That wraps
`EpochCheckpoints.on_train_epoch_end` of `landscape_sweep.training.callbacks` when it is imported: after the
callback ran (so `last.ckpt` of that epoch is written when the cell writes one every epoch) in a training whose
checkpoint dir matches `match` (fnmatch) at epoch `epoch` (1-based), the process writes a marker in `gate_dir`
(its pid and that dir; each matching dir stops once: a resumed or requeued run goes on) and sends itself SIGSTOP.
`wait_stopped(gate_dir, dir_match)` returns the pid of the process stopped in a matching dir once it is stopped;
the test then kills, requeues or SIGTERMs it (then SIGCONT) as it needs. `frozen_clock_env` stops the clock that
names default run dirs instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path

SITE = Path(__file__).parent / "gate_site"
ENV, NOW_ENV = "LANDSCAPE_SWEEP_TEST_GATE", "LANDSCAPE_SWEEP_TEST_NOW"


def _with_site(base: dict[str, str], **values: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SITE), base.get("PYTHONPATH")) if p)
    return {**base, "PYTHONPATH": path, **values}


def env(base: dict[str, str], gate_dir: Path, match: str, epoch: int) -> dict[str, str]:
    """`base` plus the gate: stop the training whose checkpoint dir matches `match` after epoch `epoch`."""
    gate_dir.mkdir(parents=True, exist_ok=True)
    return _with_site(base, **{ENV: json.dumps({"dir": str(gate_dir), "match": match, "epoch": epoch})})


def frozen_clock_env(base: dict[str, str], when: datetime) -> dict[str, str]:
    """`base` with the clock that names default run/sweep dirs (`pipeline.config.datetime`) standing at `when`."""
    return _with_site(base, **{NOW_ENV: when.isoformat()})


def frozen(when: datetime) -> type:
    """A `datetime` whose now() is always `when` (what `frozen_clock_env` sets in a CLI process; monkeypatch
    `landscape_sweep.pipeline.config.datetime` with it for a run in this process)."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return when

    return Frozen


def state(pid: int) -> str | None:
    """The process state letter (R, S, T, Z, ...) from /proc, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def wait_stopped(gate_dir: Path, dir_match: str = "*", alive=lambda: True, timeout: float = 600) -> int:
    """The pid of the process the gate stopped in a checkpoint dir matching `dir_match`, once it is stopped (state
    T). `alive()` False (e.g. the sweep ended) or `timeout` (a hang guard, never reached in a passing run) fail
    the test."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for marker in gate_dir.glob("stopped-*"):
            try:
                info = json.loads(marker.read_text())
            except ValueError:  # being written
                continue
            if fnmatch(info["dir"], dir_match) and state(info["pid"]) in ("T", "t"):
                return info["pid"]
        assert alive(), f"the run ended before the gate in {gate_dir} stopped it"
        time.sleep(0.05)
    raise AssertionError(f"the gate in {gate_dir} stopped nothing in {dir_match} within {timeout} s")


@contextmanager
def reaped(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """`proc`, killed (SIGKILL ends a stopped process too) and waited for on the way out if it still runs: a
    failing test leaves no stopped process behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

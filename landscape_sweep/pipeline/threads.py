"""Torch threads sized to a process's share of the cores, so concurrent cells never oversubscribe them.

Small cells run many at once: joblib workers, SLURM tasks packed on a node, a second sweep started beside the first.
Each process defaults to as many OpenMP threads as the machine has cores, so two of them on 2 cores run 4 spinning
threads, and measured sweeps ran 5x slower than with one thread each. Here every process running a cell registers
in a small per-user directory (one file per process: its pid and CPU set), and `trainer.threads=auto` gives it

    threads = cores it may use (its CPU affinity: the SLURM allocation, taskset, ...; at most
              SLURM_CPUS_PER_TASK inside a SLURM job, also where SLURM does not bind tasks to cores)
              // live registered processes whose CPU sets overlap its own (itself included)

at least 1. The share is re-read at every epoch start (`ThreadShare`), so a sweep started later makes the running
one shrink within an epoch, and a finished one lets it grow back. A process that died without unregistering is
ignored (its pid is gone) and its file removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

REGISTRY_ENV = "LANDSCAPE_SWEEP_THREADS_DIR"  # where processes register (default: a per-user dir in $TMPDIR)
PIN_ENV = "LANDSCAPE_SWEEP_THREADS"  # a share a parent hands its worker processes (endpoints.parallel=processes)


def registry_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"landscape_sweep-threads-{os.getuid()}"
    return Path(os.environ.get(REGISTRY_ENV) or default)


def cpu_set() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with this pid: alive
        return True
    return True


class Registration:
    """This process's entry in the registry while it runs a cell (a context manager)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or registry_dir()
        self.path = self.dir / str(os.getpid())

    def __enter__(self) -> Registration:
        with contextlib.suppress(OSError):  # a registry that cannot be written: sizing falls back to the cores
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "cpus": sorted(cpu_set())}))
            tmp.replace(self.path)
        return self

    def __exit__(self, *exc: Any) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def sharers(directory: Path | None = None, cpus: set[int] | None = None) -> int:
    """Live registered processes whose CPU sets overlap `cpus` (default: this process's), at least 1."""
    directory, cpus = directory or registry_dir(), cpus if cpus is not None else cpu_set()
    count, me = 0, os.getpid()
    try:
        entries = [p for p in directory.iterdir() if p.name.isdigit()]
    except OSError:
        return 1
    for path in entries:
        pid = int(path.name)
        if pid != me and not _alive(pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        try:
            theirs = set(json.loads(path.read_text())["cpus"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written or foreign: skip it
        count += bool(theirs & cpus)
    return max(count, 1)


def auto_threads(directory: Path | None = None) -> int:
    """This process's share of its cores (see the module docstring), or the share its parent pinned (`PIN_ENV`)."""
    pinned = os.environ.get(PIN_ENV, "")
    if pinned.isdigit() and int(pinned) > 0:
        return int(pinned)
    cpus = cpu_set()
    cores = len(cpus)
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cores = min(cores, int(slurm))
    return max(1, cores // sharers(directory, cpus))


def apply_threads(setting: int | str) -> int:
    """Set torch's intra-op threads from `trainer.threads` (`auto` or an integer); returns the number set."""
    n = auto_threads() if setting == "auto" else int(setting)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


class ThreadShare(pl.Callback):
    """Re-size the threads to the current share at every training epoch start (`trainer.threads=auto`)."""

    def __init__(self, setting: int | str) -> None:
        self.setting = setting

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        apply_threads(self.setting)

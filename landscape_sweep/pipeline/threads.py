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

The registry's path is predictable (`$TMPDIR/landscape_sweep-threads-<uid>`), so it must be private: it is created
0700, and an existing one is used only when it is a real directory (checked with lstat, opened O_NOFOLLOW) owned by
this user and not group- or world-writable; otherwise there is no registry (all cores, one warning). Files in it
are created with O_CREAT|O_EXCL|O_NOFOLLOW relative to the opened directory, so no planted link is ever followed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

REGISTRY_ENV = "LANDSCAPE_SWEEP_THREADS_DIR"  # where processes register (default: a per-user dir in $TMPDIR)
PIN_ENV = "LANDSCAPE_SWEEP_THREADS"  # a share a parent hands its worker processes (endpoints.parallel=processes)

log = logging.getLogger(__name__)
_warned: set[str] = set()  # registry dirs already refused with a warning (one warning per dir and process)


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


def _refuse(directory: Path, why: str) -> None:
    if str(directory) not in _warned:
        _warned.add(str(directory))
        log.warning("threads registry %s %s: not used, torch threads sized to all cores (set %s to a private dir)",
                    directory, why, REGISTRY_ENV)  # fmt: skip


def _unsafe(st: os.stat_result) -> str | None:
    """Why a registry dir with this (lstat) status must not be used, or None when it is private."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.getuid():
        return f"is owned by uid {st.st_uid}, not {os.getuid()}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is group- or world-writable (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def open_registry(directory: Path | None = None, create: bool = False) -> int | None:
    """A descriptor of the private registry dir (see the module docstring), or None (one warning) when it is unsafe
    or cannot be made; `create`: make it (0700) when absent. The caller closes it."""
    directory = directory or registry_dir()
    try:
        if create:
            directory.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
        why = _unsafe(os.lstat(directory))
        if why is None:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            why = _unsafe(os.fstat(fd))  # the dir opened is the one checked (not swapped in between)
            if why is None:
                return fd
            os.close(fd)
    except FileNotFoundError:
        if not create:
            return None  # nobody registered yet
        why = "cannot be created"
    except OSError as e:
        why = f"cannot be used ({e.strerror or e})"
    _refuse(directory, why)
    return None


class Registration:
    """This process's entry in the registry while it runs a cell (a context manager)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or registry_dir()
        self.name = str(os.getpid())

    def __enter__(self) -> Registration:
        fd = open_registry(self.dir, create=True)
        if fd is None:  # no private registry: sizing falls back to the cores
            return self
        tmp = f".{self.name}.{uuid.uuid4().hex}.tmp"
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
            with os.fdopen(out, "w") as f:
                json.dump({"pid": os.getpid(), "cpus": sorted(cpu_set())}, f)
            os.replace(tmp, self.name, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError:  # a full disk: sizing falls back to the cores
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        fd = open_registry(self.dir)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.name, dir_fd=fd)
            os.close(fd)


def _read_entry(name: str, fd: int) -> Any:
    """One registry file's content (a regular file, never through a link), or None."""
    try:
        entry = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return None
    with os.fdopen(entry) as f:
        try:
            return json.load(f) if stat.S_ISREG(os.fstat(f.fileno()).st_mode) else None
        except (OSError, ValueError):
            return None


def sharers(directory: Path | None = None, cpus: set[int] | None = None) -> int:
    """Live registered processes whose CPU sets overlap `cpus` (default: this process's), at least 1."""
    cpus = cpus if cpus is not None else cpu_set()
    fd = open_registry(directory)
    if fd is None:
        return 1
    count, me = 0, os.getpid()
    try:
        for name in os.listdir(fd):
            if not name.isdigit():
                continue
            if int(name) != me and not _alive(int(name)):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=fd)
                continue
            try:
                count += bool(set(_read_entry(name, fd)["cpus"]) & cpus)
            except (KeyError, TypeError):
                continue  # being written or foreign: skip it
    except OSError:
        return 1
    finally:
        os.close(fd)
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

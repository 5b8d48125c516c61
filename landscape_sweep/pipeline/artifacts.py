"""A cell's files beside results.json: `curves.csv` (every path, long format), `connectivity.png`, and `.lock`.

`.lock` (`CellLock`) marks a cell some process is running, so a second process (an identical sweep into the same
sweep dir, a requeued SLURM job) skips it instead of training it twice and racing on its files.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from landscape_sweep.checks import check_positive
from landscape_sweep.files import atomic_open, atomic_write_text, read_regular_text
from landscape_sweep.results import CellResult, PathEntry

log = logging.getLogger(__name__)

CURVE_COLUMNS = ("pair", "method", "t", "train_loss", "train_acc", "test_loss", "test_acc")


def curve_rows(paths: list[PathEntry]) -> list[list]:
    """One row per (pair, method, t) with the CURVE_COLUMNS values (None where a split was not evaluated)."""
    rows = []
    for p in paths:
        pair = "-".join(str(i) for i in p.pair)
        for i, t in enumerate(p.t):
            values = [None if getattr(p, k) is None else getattr(p, k)[i] for k in CURVE_COLUMNS[3:]]
            rows.append([pair, p.method, t, *values])
    return rows


def curves_csv(paths: list[PathEntry]) -> str:
    """Every evaluated path as long-format CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CURVE_COLUMNS)
    writer.writerows(curve_rows(paths))
    return buf.getvalue()


def plot_connectivity(paths: list[PathEntry], title: str, path: Path) -> Path:
    """PNG: loss and error along each path, train (solid) and test (dashed), one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    colors: dict[str, str] = {}
    for p in paths:
        color = colors.setdefault(p.method, f"C{len(colors)}")
        label = f"{p.method} {p.pair[0]}-{p.pair[1]}"
        for ax, values in ((axes[0], (p.train_loss, p.test_loss)), (axes[1], (p.train_acc, p.test_acc))):
            for split, style, ys in zip(("train", "test"), ("-", "--"), values):
                if ys is None:
                    continue
                ys = ys if ax is axes[0] else [1 - v for v in ys]
                ax.plot(p.t, ys, style, color=color, label=f"{label} ({split})", marker="o", markersize=2.5)
    for ax, name in zip(axes, ("loss", "error (1 - accuracy)")):
        ax.set_xlabel("t (position along the path)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path


def cell_title(result: CellResult) -> str:
    c = result.cell
    return (
        f"{c.get('dataset')} {c.get('arch')} depth={c.get('depth')} width={c.get('width')} "
        f"{c.get('optimizer')} ({c.get('num_params')} params)"
    )


def write_cell_artifacts(job_dir: Path, result: CellResult) -> dict[str, Path]:
    """curves.csv and connectivity.png of a cell (when it has paths), and surfaces.png: contour plots of its loss
    surfaces (when `landscape.surface.enabled` computed them)."""
    out: dict[str, Path] = {}
    if result.connectivity:
        atomic_write_text(job_dir / "curves.csv", curves_csv(result.connectivity))
        out["curves"] = job_dir / "curves.csv"
        out["connectivity_png"] = plot_connectivity(
            result.connectivity, cell_title(result), job_dir / "connectivity.png"
        )
    if any(e.loss_surface for e in result.endpoints) or any(p.plane_surface for p in result.connectivity):
        from landscape_sweep.report.surfaces import cell_surfaces  # matplotlib and pandas: only when needed

        png = cell_surfaces(result, job_dir / "surfaces.png")
        if png is not None:
            out["surfaces_png"] = png
    return out


# --- the cell's lock -------------------------------------------------------------------------------------------
LOCK_NAME = ".lock"
STALE_ENV = "LANDSCAPE_SWEEP_LOCK_STALE_S"
DEFAULT_STALE_S = 600.0


def lock_stale_after() -> float:
    """Seconds without a heartbeat after which another host's lock is stale (`$LANDSCAPE_SWEEP_LOCK_STALE_S`)."""
    raw = os.environ.get(STALE_ENV)
    if raw is None:
        return DEFAULT_STALE_S
    try:
        value: Any = float(raw)
    except ValueError:
        value = raw
    return check_positive(STALE_ENV, value)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a Linux process, None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: Any, proc_start: Any) -> bool:
    """Whether process `pid` of this host still runs and is the one that started at `proc_start` (not a reuse)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    stat = _proc_stat(pid)
    return stat is None or (stat[0] != "Z" and (proc_start is None or stat[1] == proc_start))


def _owner() -> dict[str, Any]:
    """Who takes a lock: pid, host, start time, SLURM job and restart count, and a token only this lock holds."""
    pid = os.getpid()
    env = os.environ
    array = env.get("SLURM_ARRAY_JOB_ID")
    slurm_job = f"{array}_{env.get('SLURM_ARRAY_TASK_ID')}" if array else env.get("SLURM_JOB_ID")
    stat = _proc_stat(pid)
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "proc_start": stat[1] if stat else None,
        "slurm_job": slurm_job,
        "slurm_restart": int(env.get("SLURM_RESTART_COUNT") or 0),
        "token": uuid.uuid4().hex,
    }


def describe(info: dict[str, Any] | None) -> str:
    """`pid <pid> on <host> since <time>` of a lock's owner."""
    if not info:
        return "an unknown process (the lock file is being written or unreadable)"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"


def _read_lock(path: Path) -> tuple[dict[str, Any] | None, float | None]:
    """The lock's owner (None: empty or unreadable) and its mtime (None: no lock)."""
    try:
        mtime = path.stat().st_mtime
        info = json.loads(read_regular_text(path))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError):
        return None, mtime
    return (info if isinstance(info, dict) else None), mtime


def lock_holder(job_dir: str | Path) -> str | None:
    """Who holds a cell's lock (`describe`), or None when nobody does or the lock is stale (its owner is gone)."""
    info, mtime = _read_lock(Path(job_dir) / LOCK_NAME)
    if mtime is None or CellLock(job_dir, stale_after=lock_stale_after()).stale(info, mtime):
        return None
    return describe(info)


class CellLock:
    """An exclusive lock on a job dir: `<job_dir>/.lock`, created with O_CREAT|O_EXCL, naming its owner.

    A lock is stale, and is broken, when its owner is gone: on this host when its pid is dead (or now another
    process); on another host when its heartbeat (the file's mtime, refreshed every `stale_after / 4` s) is older
    than `stale_after` s, or when it belongs to an earlier run of this (requeued) SLURM job. `identity` (e.g. the
    config the owner runs, `cell.cell_identity`) is written into the lock too, so a process that finds the cell
    locked can tell whether its holder runs the same cell (`holder_info`).
    """

    def __init__(self, job_dir: str | Path, stale_after: float = DEFAULT_STALE_S, identity: dict | None = None):
        self.path = Path(job_dir) / LOCK_NAME
        self.stale_after = stale_after
        self.holder = ""  # who holds the lock, when `acquire` returned False
        self.holder_info: dict[str, Any] | None = None  # the holder's lock content, when `acquire` returned False
        self.me = {**(identity or {}), **_owner()}
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock (breaking a stale one); False when a live process holds it (see `holder`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self._heartbeat = threading.Thread(target=self._beat, name="cell-lock-heartbeat", daemon=True)
                self._heartbeat.start()
                return True
            info, mtime = _read_lock(self.path)
            if mtime is None:
                continue  # released meanwhile
            if not self.stale(info, mtime):
                self.holder, self.holder_info = describe(info), info
                return False
            log.warning("breaking the stale lock %s of %s", self.path, describe(info))
            self._break(info)
        self.holder = "other processes (the lock kept changing hands)"
        return False

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still this one."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        info, _ = _read_lock(self.path)
        if info is not None and info.get("token") == self.me["token"]:
            self.path.unlink(missing_ok=True)

    def stale(self, info: dict[str, Any] | None, mtime: float) -> bool:
        """Whether a lock (owner `info`, mtime `mtime`) belongs to a process that is gone."""
        age = time.time() - mtime
        if info is None:  # being written, or garbage: only its age can tell
            return age > self.stale_after
        if info.get("host") == self.me["host"]:
            return not _alive(info.get("pid"), info.get("proc_start"))
        me, restart = self.me, info.get("slurm_restart")
        requeued = me["slurm_job"] and info.get("slurm_job") == me["slurm_job"] and isinstance(restart, int)
        if requeued and restart < me["slurm_restart"]:  # an earlier run of this requeued SLURM job: gone
            return True
        return age > self.stale_after

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.me, f, default=str)
        return True

    def _break(self, seen: dict[str, Any] | None) -> None:
        """Move the stale lock aside; put back a live one that replaced it in between (then it is not broken)."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{self.me['token']}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another process broke it first
        moved, _ = _read_lock(aside)
        if moved != seen:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        aside.unlink(missing_ok=True)

    def _beat(self) -> None:
        interval = max(0.05, min(60.0, self.stale_after / 4))
        while not self._stop.wait(interval):
            with contextlib.suppress(OSError):
                os.utime(self.path)

"""Watch a submitted SLURM array while its cells wait: cancel it when it can never start or has waited too long.

While the launcher waits for the array it asks `squeue` for each task's state and pending reason (every 2 s at
first, backing off to every 60 s). A reason that cannot resolve without changing the request or the cluster
(`NEVER`, `NEVER_PATTERN`: PartitionConfig, BadConstraints, a per-job QOS/association cap, ...) cancels the array at
once; `hydra.launcher.pending_timeout_min` bounds the time the array spends with cells pending and none running,
whatever the reason (Resources, Priority, BeginTime, a hold, ReqNodeNotAvail, a down partition, ...). Either way
the array is cancelled (`scancel`) and `PendingError` carries a one-line message naming the launcher key, the
request and what the partition offers (read from `sinfo`). Every SLURM command goes through `slurm()`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.errors import CompactHydraException

from landscape_sweep.scheduler import slurm

log = logging.getLogger(__name__)

# pending reasons that cannot resolve while the request and the cluster's configuration stay as they are
NEVER = frozenset(
    {
        "PartitionConfig",
        "BadConstraints",
        "PartitionTimeLimit",
        "PartitionMinNodes",
        "DependencyNeverSatisfied",
        "InvalidAccount",
        "InvalidQOS",
        "AccountNotAllowed",
        "QOSNotAllowed",
        "ReservationDeleted",
    }
)
# per-job / per-node caps of a QOS or association (QOSMaxCpuPerJobLimit, AssocMaxMemPerNode, ...) and QOS minimums;
# per-user, per-account and group (Grp) limits resolve when other jobs end and are left to pending_timeout_min
NEVER_PATTERN = re.compile(r"(Assoc|QOS)Max\w*Per(Job|Node)(Limit)?|QOSMin\w+")
# the launcher key a reason points at when the partition's nodes cannot tell
REASON_KEY = {
    "InvalidAccount": "account",
    "AccountNotAllowed": "account",
    "InvalidQOS": "qos",
    "QOSNotAllowed": "qos",
    "PartitionTimeLimit": "timeout_min",
    "BadConstraints": "constraint",
}
SHOWN = ("partition", "cpus_per_task", "mem_gb", "gpus_per_node", "timeout_min", "constraint", "qos", "account")


class PendingError(CompactHydraException):
    """The array cannot start: it can never start or pended past `pending_timeout_min` (cancelled), or was rejected.

    A `CompactHydraException`, so Hydra prints its one-line message without a traceback.
    """


@dataclass(frozen=True)
class QueueRow:
    """One line of `squeue`: a task or a range of pending tasks (`12_[0-3]`), its state and pending reason."""

    job: str
    state: str
    partition: str
    reason: str


@dataclass(frozen=True)
class Limits:
    """What the largest nodes of a partition offer (`sinfo`); `time_min` None when unlimited."""

    cpus: int
    mem_mb: int
    gpus: int
    time_min: float | None
    time: str


def queue(arrays: Sequence[str]) -> list[QueueRow] | None:
    """The live tasks of the arrays (finished ones are not listed); None when squeue does not answer."""
    out = slurm("squeue", "-h", "-j", ",".join(arrays), "-o", "%i|%T|%P|%r")
    if out is None:
        return None
    rows = [(line.split("|", 3) + ["", "", ""])[:4] for line in out.splitlines() if line.strip()]
    return [QueueRow(re.sub(r"%\d+", "", job), *rest) for job, *rest in rows]  # 12_[0-3%2]: %2 is the throttle


def never_starts(reason: str) -> bool:
    """Whether a pending reason (`squeue %r`, e.g. `ReqNodeNotAvail, UnavailableNodes:n1`) can never resolve."""
    code = reason.split(",")[0].strip()
    return code in NEVER or NEVER_PATTERN.fullmatch(code) is not None


def _number(text: str) -> int:
    m = re.match(r"\d+", text.strip())
    return int(m.group()) if m else 0


def _minutes(limit: str) -> float | None:
    """`sinfo %l` (`infinite`, `30:00`, `2:00:00`, `1-12:00:00`) in minutes; None when unlimited or unreadable."""
    days, _, clock = limit.strip().rpartition("-")
    parts = clock.split(":")
    if not all(p.isdigit() for p in [days or "0", *parts]) or not 2 <= len(parts) <= 3:
        return None
    h, m, s = [0] * (3 - len(parts)) + [int(p) for p in parts]
    return int(days or 0) * 1440 + h * 60 + m + s / 60


def partition_limits(partition: str) -> Limits | None:
    """The largest CPU count, memory and GPU count over the partition's nodes, and its time limit."""
    out = slurm("sinfo", "-h", "-p", partition, "-o", "%c|%m|%G|%l")
    rows = [line.split("|") for line in (out or "").splitlines() if line.count("|") == 3]
    if not rows:
        return None
    gpus = [int(n) for r in rows for n in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", r[2])]
    time_limit = rows[0][3].strip()
    return Limits(
        cpus=max(_number(r[0]) for r in rows),
        mem_mb=max(_number(r[1]) for r in rows),
        gpus=max(gpus, default=0),
        time_min=_minutes(time_limit),
        time=time_limit,
    )


def blame(request: Mapping[str, Any], limits: Limits) -> tuple[str, str] | None:
    """(launcher key, what the partition offers) for the first requested resource that no node can give."""
    cpus = (request.get("cpus_per_task") or 1) * (request.get("tasks_per_node") or 1)
    mem_mb = (request.get("mem_gb") or 0) * 1024
    gpus = request.get("gpus_per_node") or 0
    checks = [
        ("cpus_per_task", cpus > limits.cpus, f"has nodes with at most {limits.cpus} CPUs"),
        ("mem_gb", mem_mb > limits.mem_mb, f"has nodes with at most {limits.mem_mb} MB of memory"),
        ("gpus_per_node", gpus > limits.gpus, f"has nodes with at most {limits.gpus} GPUs"),
        (
            "timeout_min",
            limits.time_min is not None and (request.get("timeout_min") or 0) > limits.time_min,
            f"has a time limit of {limits.time} ({limits.time_min:g} min)" if limits.time_min is not None else "",
        ),
    ]
    return next(((key, offer) for key, bad, offer in checks if bad), None)


def request_text(request: Mapping[str, Any]) -> str:
    """`hydra.launcher (partition=None, cpus_per_task=4, ...)`: the request, for messages that blame no one key."""
    return "hydra.launcher (" + ", ".join(f"{k}={request.get(k)}" for k in SHOWN if k in request) + ")"


def never_message(row: QueueRow, request: Mapping[str, Any]) -> str:
    """`hydra.launcher.<key>=<value>: job <id> can never start (<reason>): partition <p> <what it offers>; ...`."""
    reason = row.reason.split(",")[0].strip()
    limits = partition_limits(row.partition) if row.partition else None
    found = blame(request, limits) if limits is not None else None
    scope = "its QOS" if reason.startswith("QOS") else "its association" if reason.startswith("Assoc") else ""
    if found is not None:
        key, detail = found[0], f": partition {row.partition} {found[1]}"
    elif scope:
        key, detail = None, f": the request exceeds a per-job or per-node limit of {scope} (partition {row.partition})"
    else:
        key, detail = REASON_KEY.get(reason), f" in partition {row.partition}"
    head = f"hydra.launcher.{key}={request.get(key)}" if key is not None else request_text(request)
    return f"{head}: job {row.job} can never start ({row.reason}){detail}; the array was cancelled"


class PendingWatch:
    """From successive `squeue` answers, whether to give up on the array (a one-line reason) or keep waiting."""

    def __init__(self, request: Mapping[str, Any], timeout_min: float | None, since: float | None = None) -> None:
        self.request, self.timeout_min = request, timeout_min
        # cells pending and none running since: the submission (now) at first
        self._idle_since: float | None = time.monotonic() if since is None else since

    def check(self, rows: Sequence[QueueRow], now: float) -> str | None:
        """None to keep waiting, else why the array must be cancelled."""
        pending = [r for r in rows if r.state == "PENDING"]
        hopeless = next((r for r in pending if never_starts(r.reason)), None)
        if hopeless is not None:
            return never_message(hopeless, self.request)
        if not pending or len(pending) < len(rows):  # a cell is running (or nothing waits): the sweep moves
            self._idle_since = None
            return None
        self._idle_since = now if self._idle_since is None else self._idle_since
        waited = (now - self._idle_since) / 60
        if self.timeout_min is None or waited < self.timeout_min:
            return None
        row = pending[0]
        return (
            f"hydra.launcher.pending_timeout_min={self.timeout_min:g}: job {row.job} pended {waited:.1f} min with no "
            f"cell running ({row.reason or 'no reason given'}, partition {row.partition}); the array was cancelled"
        )


def poll_interval(elapsed_s: float) -> float:
    """Seconds between squeue calls: 2 s at first, then a tenth of the time waited so far, at most 60 s."""
    return min(60.0, max(2.0, elapsed_s / 10))


def wait(
    jobs: Sequence[Any],
    watch: PendingWatch,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once every job is done; when `watch` gives up, cancel the arrays and raise `PendingError`."""
    arrays = sorted({str(j.job_id).split("_")[0] for j in jobs})
    left, start = list(jobs), clock()
    next_poll, warned = start, False
    while True:
        left = [j for j in left if not j.done()]
        if not left:
            return
        now = clock()
        if now >= next_poll:
            rows = queue(arrays)
            if rows is None and not warned:
                log.warning("squeue -j %s did not answer; pending jobs are not checked", ",".join(arrays))
                warned = True
            problem = watch.check(rows, now) if rows is not None else None
            if problem is not None:
                slurm("scancel", *arrays)
                raise PendingError(problem)
            next_poll = now + poll_interval(now - start)
        sleep(1.0)

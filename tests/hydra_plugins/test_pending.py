"""Watching a submitted SLURM array while it waits (hydra_plugins/landscape_sweep_launchers/_pending.py).

Pending-reason classification, the one-line messages, the pending clock, and the wait loop over stand-ins for
`squeue` / `sinfo` / `scancel` (executables on PATH, or `_pending.slurm` replaced). tests/pipeline/test_slurm.py
runs the same on a real cluster.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hydra_plugins.landscape_sweep_launchers import _pending
from hydra_plugins.landscape_sweep_launchers._pending import Limits, PendingError, PendingWatch, QueueRow

REQUEST = {"partition": None, "cpus_per_task": 64, "mem_gb": 8, "gpus_per_node": None, "timeout_min": 120}


@pytest.mark.parametrize(
    "reason",
    [
        "PartitionConfig",
        "BadConstraints",
        "PartitionTimeLimit",
        "InvalidAccount",
        "QOSNotAllowed",
        "DependencyNeverSatisfied",
        "QOSMaxCpuPerJobLimit",
        "AssocMaxWallDurationPerJobLimit",
        "QOSMaxMemoryPerNode",
        "AssocMaxGRESPerJob",
        "QOSMinCpuNotSatisfied",
    ],
)
def test_reasons_that_never_resolve(reason):
    assert _pending.never_starts(reason)


@pytest.mark.parametrize(
    "reason",
    [
        "None",
        "",
        "Resources",
        "Priority",
        "BeginTime",
        "JobHeldUser",
        "JobHeldAdmin",
        "Dependency",
        "JobArrayTaskLimit",
        "ReqNodeNotAvail, UnavailableNodes:node[1-3]",
        "PartitionDown",
        "AssocMaxJobsLimit",
        "AssocGrpCpuLimit",
        "QOSMaxJobsPerUserLimit",
        "QOSMaxCpuPerUserLimit",
        "QOSGrpGRES",
        "MaxJobsPerAccount",
    ],
)
def test_reasons_that_can_resolve(reason):
    assert not _pending.never_starts(reason)


def _stand_in(bin_dir: Path, name: str, script: str) -> Path:
    """An executable `name` on PATH that records its arguments in `<name>.args` and runs `script`."""
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / name
    exe.write_text(f'#!/bin/bash\necho "$@" >> "{bin_dir}/{name}.args"\n{script}\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return bin_dir / f"{name}.args"


@pytest.fixture
def bin_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "bin"


def test_queue_asks_squeue_for_every_array_and_reads_reasons(bin_dir):
    args = _stand_in(
        bin_dir,
        "squeue",
        "printf '12_[2-3%%2]|PENDING|debug|ReqNodeNotAvail, UnavailableNodes:n1\\n12_1|RUNNING|debug|None\\n'",
    )
    rows = _pending.queue(["12", "14"])
    assert args.read_text() == "-h -j 12,14 -o %i|%T|%P|%r\n"
    assert rows == [
        QueueRow("12_[2-3]", "PENDING", "debug", "ReqNodeNotAvail, UnavailableNodes:n1"),
        QueueRow("12_1", "RUNNING", "debug", "None"),
    ]


def test_queue_is_none_when_squeue_fails_or_is_missing(bin_dir, monkeypatch):
    _stand_in(bin_dir, "squeue", "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1")
    assert _pending.queue(["12"]) is None
    monkeypatch.setenv("PATH", str(bin_dir / "nowhere"))
    assert _pending.queue(["12"]) is None


def test_partition_limits_take_the_largest_node(bin_dir):
    args = _stand_in(
        bin_dir, "sinfo", "printf '32|128000|gpu:a100:4(S:0-1)|1-00:00:00\\n64+|257000+|(null)|1-00:00:00\\n'"
    )
    assert _pending.partition_limits("gpu") == Limits(cpus=64, mem_mb=257000, gpus=4, time_min=1440, time="1-00:00:00")
    assert args.read_text() == "-h -p gpu -o %c|%m|%G|%l\n"


@pytest.mark.parametrize(
    "limit, minutes", [("infinite", None), ("30:00", 30), ("2:00:00", 120), ("1-12:00:00", 2160), ("n/a", None)]
)
def test_time_limits_in_minutes(limit, minutes):
    assert _pending._minutes(limit) == minutes


def test_blame_names_the_first_resource_no_node_has():
    node = Limits(cpus=2, mem_mb=1800, gpus=0, time_min=60, time="1:00:00")
    assert _pending.blame(REQUEST, node) == ("cpus_per_task", "has nodes with at most 2 CPUs")
    fits = {**REQUEST, "cpus_per_task": 1, "mem_gb": 1, "timeout_min": 60}
    assert _pending.blame(fits, node) is None
    assert _pending.blame({**fits, "mem_gb": 2}, node) == ("mem_gb", "has nodes with at most 1800 MB of memory")
    assert _pending.blame({**fits, "gpus_per_node": 1}, node) == ("gpus_per_node", "has nodes with at most 0 GPUs")
    assert _pending.blame({**fits, "timeout_min": 61}, node) == ("timeout_min", "has a time limit of 1:00:00 (60 min)")
    assert _pending.blame({**fits, "cpus_per_task": 1, "tasks_per_node": 3}, node)[0] == "cpus_per_task"


def _answers(monkeypatch, **by_command: str | None) -> list[tuple[str, ...]]:
    """Replace `_pending.slurm` (the one door to SLURM) with canned answers; returns the calls made."""
    calls: list[tuple[str, ...]] = []

    def slurm(*args: str) -> str | None:
        calls.append(args)
        return by_command.get(args[0], "")

    monkeypatch.setattr(_pending, "slurm", slurm)
    return calls


def test_a_hopeless_request_is_named_in_one_line(monkeypatch):
    _answers(monkeypatch, sinfo="2|1800|(null)|infinite\n")
    row = QueueRow("12_[0-3]", "PENDING", "debug", "PartitionConfig")
    assert _pending.never_message(row, REQUEST) == (
        "hydra.launcher.cpus_per_task=64: job 12_[0-3] can never start (PartitionConfig): "
        "partition debug has nodes with at most 2 CPUs; the array was cancelled"
    )


def test_limits_outside_the_nodes_name_the_key_or_the_request(monkeypatch):
    _answers(monkeypatch, sinfo="128|512000|(null)|infinite\n")
    qos = QueueRow("7_0", "PENDING", "cpu", "QOSMaxCpuPerJobLimit")
    assert _pending.never_message(qos, {**REQUEST, "qos": "short"}) == (
        "hydra.launcher (partition=None, cpus_per_task=64, mem_gb=8, gpus_per_node=None, timeout_min=120, "
        "qos=short): job 7_0 can never start (QOSMaxCpuPerJobLimit): the request exceeds a per-job or per-node limit "
        "of its QOS (partition cpu); the array was cancelled"
    )
    account = QueueRow("7_0", "PENDING", "cpu", "InvalidAccount")
    assert _pending.never_message(account, {**REQUEST, "account": "lab"}).startswith(
        "hydra.launcher.account=lab: job 7_0 can never start (InvalidAccount) in partition cpu; "
    )


def test_the_pending_clock_runs_only_while_nothing_runs(monkeypatch):
    _answers(monkeypatch)
    watch = PendingWatch(REQUEST, timeout_min=1.0, since=0.0)
    held = [QueueRow("3_[0-1]", "PENDING", "debug", "BeginTime")]
    assert watch.check(held, now=59.0) is None
    assert watch.check(held, now=60.0) == (
        "hydra.launcher.pending_timeout_min=1: job 3_[0-1] pended 1.0 min with no cell running "
        "(BeginTime, partition debug); the array was cancelled"
    )
    moving = PendingWatch(REQUEST, timeout_min=1.0, since=0.0)
    queued = [QueueRow("3_1", "PENDING", "debug", "Resources"), QueueRow("3_0", "RUNNING", "debug", "None")]
    assert moving.check(queued, now=100.0) is None  # a running cell resets the clock
    assert moving.check(held, now=130.0) is None and moving.check(held, now=189.0) is None
    assert moving.check(held, now=190.0) is not None
    unbounded = PendingWatch(REQUEST, timeout_min=None, since=0.0)
    assert unbounded.check(held, now=1e9) is None


def test_a_never_reason_gives_up_at_once(monkeypatch):
    _answers(monkeypatch, sinfo="2|1800|(null)|infinite\n")
    watch = PendingWatch(REQUEST, timeout_min=None, since=0.0)
    rows = [QueueRow("3_[0-1]", "PENDING", "debug", "PartitionConfig")]
    assert watch.check(rows, now=0.0).startswith("hydra.launcher.cpus_per_task=64: job 3_[0-1] can never start")


def test_poll_interval_backs_off():
    assert [_pending.poll_interval(t) for t in (0, 20, 100, 600, 3600)] == [2, 2, 10, 60, 60]


class _Job:
    def __init__(self, job_id: str, done_after: int | None = None):
        self.job_id, self.checks, self.done_after = job_id, 0, done_after

    def done(self) -> bool:
        self.checks += 1
        return self.done_after is not None and self.checks > self.done_after


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_cancels_the_array_and_raises_on_a_hopeless_reason(monkeypatch):
    calls = _answers(monkeypatch, squeue="8_[0-1]|PENDING|debug|PartitionConfig\n", sinfo="2|1800|(null)|infinite\n")
    clock = _Clock()
    with pytest.raises(PendingError, match=r"^hydra.launcher.cpus_per_task=64: job 8_\[0-1\] can never start"):
        _pending.wait(
            [_Job("8_0"), _Job("8_1")], PendingWatch(REQUEST, None, since=clock()), clock=clock, sleep=clock.sleep
        )
    assert calls[0] == ("squeue", "-h", "-j", "8", "-o", "%i|%T|%P|%r") and calls[-1] == ("scancel", "8")
    assert clock.now == 1000.0  # the first answer decides


def test_wait_times_out_a_held_array(monkeypatch):
    calls = _answers(monkeypatch, squeue="8_[0-1]|PENDING|debug|JobHeldUser\n")
    clock = _Clock()
    watch = PendingWatch(REQUEST, timeout_min=0.5, since=clock())
    with pytest.raises(PendingError, match=r"^hydra.launcher.pending_timeout_min=0.5: job 8_\[0-1\] pended 0.5 min"):
        _pending.wait([_Job("8_0"), _Job("8_1")], watch, clock=clock, sleep=clock.sleep)
    assert 30 <= clock.now - 1000 <= 32 and calls[-1] == ("scancel", "8")
    assert sum(c[0] == "squeue" for c in calls) == 15  # every 2 s, then a tenth of the time waited


def test_wait_returns_when_every_job_is_done_and_tolerates_a_silent_squeue(monkeypatch, caplog):
    calls = _answers(monkeypatch, squeue=None)
    clock = _Clock()
    jobs = [_Job("9_0", done_after=3), _Job("9_1", done_after=5)]
    _pending.wait(jobs, PendingWatch(REQUEST, 0.01, since=clock()), clock=clock, sleep=clock.sleep)
    assert clock.now == 1005.0 and all(c[0] == "squeue" for c in calls)
    assert [r.getMessage() for r in caplog.records] == ["squeue -j 9 did not answer; pending jobs are not checked"]

import json
import os
import subprocess
import sys

import pytest
import torch

from landscape_sweep.pipeline import threads
from landscape_sweep.pipeline.threads import Registration, apply_threads, auto_threads, sharers


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv(threads.REGISTRY_ENV, str(tmp_path))
    return tmp_path


def _fake(registry, pid, cpus):
    (registry / str(pid)).write_text(json.dumps({"pid": pid, "cpus": sorted(cpus)}))


def test_share_divides_the_cores_among_live_overlapping_processes(registry, monkeypatch):
    monkeypatch.setattr(threads, "cpu_set", lambda: {0, 1, 2, 3})
    with Registration():
        assert sharers() == 1 and auto_threads() == 4
        live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            _fake(registry, live.pid, {2, 3})  # overlaps: shares
            _fake(registry, os.getppid(), {7})  # another CPU set (e.g. another SLURM allocation): does not
            assert sharers() == 2 and auto_threads() == 2
            dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
            _fake(registry, int(dead.stdout), {0})  # died without unregistering: ignored and removed
            assert sharers() == 2 and not (registry / dead.stdout.decode().strip()).exists()
        finally:
            live.kill()
            live.wait()
        assert auto_threads() == 4  # the other process ended: the share grows back
    assert not (registry / str(os.getpid())).exists()


def test_at_least_one_thread_and_fixed_settings(registry, monkeypatch):
    monkeypatch.setattr(threads, "cpu_set", lambda: {0})
    for pid in (os.getpid(), os.getppid()):
        _fake(registry, pid, {0})
    assert sharers() == 2 and auto_threads() == 1
    before = torch.get_num_threads()
    try:
        assert apply_threads(3) == 3 and torch.get_num_threads() == 3
        assert apply_threads("auto") == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_unwritable_registry_falls_back_to_all_cores(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv(threads.REGISTRY_ENV, str(blocked / "sub"))
    with Registration():
        assert auto_threads() == len(threads.cpu_set())


def test_a_slurm_task_uses_at_most_its_cpus_per_task(registry, monkeypatch):
    monkeypatch.setattr(threads, "cpu_set", lambda: set(range(16)))  # SLURM did not bind the task to its cores
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    with Registration():
        assert auto_threads() == 4


def test_a_pinned_share_wins_over_the_registry(registry, monkeypatch):
    monkeypatch.setenv(threads.PIN_ENV, "1")  # what a cell sets for its endpoint worker processes
    monkeypatch.setattr(threads, "cpu_set", lambda: {0, 1, 2, 3})
    with Registration():
        assert auto_threads() == 1

import json
import os
import stat
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


# --- the registry is private: another local user can neither redirect its writes nor fake sharers ---------------
def _cores() -> int:
    return len(threads.cpu_set())


def _refused(directory, caplog, why: str) -> None:
    """`directory` is not used: nothing written into it, one warning naming it and why, all cores used."""
    before = sorted(p.name for p in directory.iterdir())
    with caplog.at_level("WARNING", logger=threads.__name__):
        with Registration(directory):
            assert sorted(p.name for p in directory.iterdir()) == before
            assert auto_threads(directory) == _cores()
        assert auto_threads(directory) == _cores()
    warnings = [r.getMessage() for r in caplog.records if r.name == threads.__name__]
    assert len(warnings) == 1 and str(directory) in warnings[0] and why in warnings[0], warnings


@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setattr(threads, "_warned", set(), raising=False)


def test_a_new_registry_dir_is_private(tmp_path, fresh_warning):
    directory = tmp_path / "reg"
    with Registration(directory):
        assert (directory / str(os.getpid())).is_file()
    assert stat.S_IMODE(os.lstat(directory).st_mode) == 0o700


def test_a_registry_dir_that_is_a_symlink_is_refused(tmp_path, caplog, fresh_warning):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    link = tmp_path / "reg"
    link.symlink_to(theirs)
    _refused(link, caplog, "symlink")
    assert list(theirs.iterdir()) == []


def test_a_group_or_world_writable_registry_dir_is_refused(tmp_path, caplog, fresh_warning):
    shared = tmp_path / "reg"
    shared.mkdir()
    shared.chmod(0o777)  # another user could plant files: fake sharers (1 thread) or links to overwrite
    for pid in (os.getppid(), 1):
        _fake(shared, pid, threads.cpu_set())
    _refused(shared, caplog, "writable")


def test_a_registry_dir_of_another_user_is_refused(tmp_path, caplog, fresh_warning, monkeypatch):
    theirs = tmp_path / "reg"
    theirs.mkdir(mode=0o700)
    if os.getuid() == 0:
        os.chown(theirs, 4242, 4242)
    else:
        monkeypatch.setattr(threads.os, "getuid", lambda: os.stat(theirs).st_uid + 1)
    _refused(theirs, caplog, "owned by uid")


def test_registering_never_writes_through_a_planted_link(tmp_path, fresh_warning):
    directory = tmp_path / "reg"
    directory.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for name in (f"{os.getpid()}.tmp", f".{os.getpid()}.tmp"):
        (directory / name).symlink_to(victim)
    with Registration(directory):
        assert json.loads((directory / str(os.getpid())).read_text())["pid"] == os.getpid()
    assert victim.read_text() == "precious\n"

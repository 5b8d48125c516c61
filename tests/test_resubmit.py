"""`python -m landscape_sweep.resubmit`: the sweep's own command, into its own dir, for the unfinished cells."""

from __future__ import annotations

import json
import sys

import pytest

from landscape_sweep import manifest, resubmit, scheduler


def sweep(tmp_path, launcher=resubmit.SLURM_LAUNCHER):
    argv = ["-m", "hydra/launcher=slurm", "hydra.sweep.dir=old", "hydra.launcher.detach=false", "model.depth=1,2"]
    cells = [["model.depth=1"], ["model.depth=2"]]
    manifest.start_sweep(tmp_path, cells, argv=argv, cwd=str(tmp_path), python=sys.executable, launcher=launcher,
                         detach=False)  # fmt: skip
    return manifest.read_manifest(tmp_path)


def test_the_command_is_the_sweeps_own_pointed_at_its_dir_and_detached(tmp_path):
    cmd = resubmit.command(sweep(tmp_path), tmp_path)
    assert cmd == [
        sys.executable, "-m", "landscape_sweep", "-m", "hydra/launcher=slurm", "model.depth=1,2",
        f"hydra.sweep.dir={tmp_path}", "hydra.launcher.detach=true",
    ]  # fmt: skip
    local = resubmit.command(
        sweep(tmp_path, launcher="hydra._internal.core_plugins.basic_launcher.BasicLauncher"), tmp_path
    )
    assert local[-1] == f"hydra.sweep.dir={tmp_path}"  # local launchers have no detach: the cells run here


def test_only_unfinished_cells_are_resubmitted(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(scheduler, "job_states", lambda ids: {})
    sweep(tmp_path)
    for num, status in ((0, "completed"), (1, "failed")):
        (tmp_path / str(num)).mkdir()
        (tmp_path / str(num) / "results.json").write_text(json.dumps({"status": status, "error": "x"}))
    assert resubmit.main([str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "resubmitting 1 of 2 cells: #1 (failed)" and out[1].endswith("hydra.launcher.detach=true")
    (tmp_path / "1" / "results.json").write_text(json.dumps({"status": "completed"}))
    assert resubmit.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("nothing to resubmit: 2/2 completed")


def test_a_sweep_without_manifest_fails_in_one_line(tmp_path, capsys):
    assert resubmit.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no readable sweep.json" in err and f"hydra.sweep.dir={tmp_path}" in err


def _unfinished(tmp_path, monkeypatch, **command):
    """A sweep with one failed cell whose manifest's command is patched with `command`."""
    monkeypatch.setattr(scheduler, "job_states", lambda ids: {})
    data = sweep(tmp_path)
    data["command"].update(command)
    manifest.write_manifest(tmp_path, data)
    for num, status in ((0, "completed"), (1, "failed")):
        (tmp_path / str(num)).mkdir()
        (tmp_path / str(num) / "results.json").write_text(json.dumps({"status": status, "error": "x"}))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_the_program_a_manifest_names_is_never_run(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "marker"
    evil = tmp_path / "python"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\n")
    evil.chmod(0o755)
    _unfinished(tmp_path, monkeypatch, python=str(evil))
    for args in ([str(tmp_path)], [str(tmp_path), "--dry-run"]):
        assert resubmit.main(args) == 2
        err = _one_line(capsys)
        assert f"command.python={str(evil)!r}" in err and sys.executable in err, err
    assert not marker.exists()


def test_the_sweep_is_resubmitted_with_this_interpreter_in_its_existing_dir(tmp_path, monkeypatch, capsys):
    _unfinished(tmp_path, monkeypatch)
    calls = []
    monkeypatch.setattr(resubmit.subprocess, "call", lambda cmd, cwd: calls.append((cmd, cwd)) or 0)
    assert resubmit.main([str(tmp_path)]) == 0
    assert calls == [(resubmit.command(manifest.read_manifest(tmp_path), tmp_path), str(tmp_path))]
    assert calls[0][0][0] == sys.executable


@pytest.mark.parametrize(
    "command, key",
    [
        ({"cwd": "/nonexistent/dir"}, "command.cwd='/nonexistent/dir'"),
        ({"cwd": "relative"}, "command.cwd='relative'"),
        ({"cwd": ["/"]}, "command.cwd=['/']"),
        ({"argv": "-m model.depth=1,2"}, "command.argv='-m model.depth=1,2'"),
    ],
)
def test_a_bad_recorded_command_fails_in_one_line(tmp_path, monkeypatch, capsys, command, key):
    _unfinished(tmp_path, monkeypatch, **command)
    monkeypatch.setattr(resubmit.subprocess, "call", lambda *a, **k: pytest.fail("ran the command"))
    assert resubmit.main([str(tmp_path)]) == 2
    err = _one_line(capsys)
    assert key in err, err


def test_a_moved_sweep_resubmits_its_own_unfinished_and_invalid_cells(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(scheduler, "job_states", lambda ids: {})
    old = tmp_path / "old"
    old.mkdir()
    sweep(old)
    for num, body in ((0, {"status": "completed"}), (1, {"schema": 99, "status": "completed"})):
        (old / str(num)).mkdir()
        (old / str(num) / "results.json").write_text(json.dumps(body))
    new = tmp_path / "new"
    old.rename(new)
    data = manifest.read_manifest(new)
    data["command"]["cwd"] = str(tmp_path)  # the command's own dir still exists (the sweep dir moved)
    manifest.write_manifest(new, data)
    assert resubmit.main([str(new), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "resubmitting 1 of 2 cells: #1 (invalid)" and out[1].endswith(
        f"hydra.sweep.dir={new} hydra.launcher.detach=true"
    )


@pytest.mark.parametrize("how", ["writable by others", "owned by uid"])
def test_a_manifest_someone_else_could_have_written_is_shown_not_run(tmp_path, monkeypatch, capsys, how):
    """Its arguments reach Hydra, and Hydra overrides can make a job run programs (e.g. `hydra.launcher.setup`
    lines of a SLURM job): resubmit runs only a sweep.json that is this user's own and nobody else can write."""
    import os

    _unfinished(tmp_path, monkeypatch, argv=["-m", "hydra.launcher.setup=[touch /tmp/x]", "model.depth=1,2"])
    path = manifest.manifest_path(tmp_path)
    if how == "writable by others":
        path.chmod(0o666)
    elif os.getuid() == 0:
        os.chown(path, 4242, 4242)
    else:
        monkeypatch.setattr(resubmit.os, "getuid", lambda: path.stat().st_uid + 1)
    monkeypatch.setattr(resubmit.subprocess, "call", lambda *a, **k: pytest.fail("ran the command"))
    assert resubmit.main([str(tmp_path)]) == 2
    err = _one_line(capsys)
    assert str(path) in err and how in err and "hydra.launcher.setup=" in err, err


def test_a_malformed_manifest_is_refused_in_one_line(tmp_path, capsys):
    data = sweep(tmp_path)
    data["cells"]["1"]["overrides"] = "model.depth=2"  # a string, not a list
    manifest.write_manifest(tmp_path, data)
    assert resubmit.main([str(tmp_path), "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        f"landscape_sweep.resubmit: {tmp_path / 'sweep.json'}: cells['1'].overrides='model.depth=2': must be a list "
        f"of strings; fix it or re-run the sweep's command with hydra.sweep.dir={tmp_path}\n"
    )

"""`python -m landscape_sweep.resubmit <sweep_dir>`: run the cells of a sweep that did not complete, again.

It re-runs the sweep's own command (`sweep.json`: its arguments, in its working directory) into the same sweep
dir (`hydra.sweep.dir=<sweep_dir>`); for a SLURM sweep detached (`hydra.launcher.detach=true`). The launcher then
submits only the cells that are not completed and whose earlier job the scheduler no longer holds, with a new report
job after them, and returns at once; a local sweep runs its unfinished cells here (completed ones skip themselves).
The settings are the command's: a config file edited since then changes the cells it touches (they re-run).

sweep.json is data: the program it runs is always this interpreter (`sys.executable`), never one the file names. A
manifest recorded by another Python is refused in one line (run the resubmit with that Python if you trust it), as
is a recorded working directory that is not an existing absolute directory, or arguments that are not strings.
The arguments reach Hydra, whose overrides can make a job run programs (`hydra.launcher.setup` lines of a SLURM
job, `hydra.job.env_set`): they are run only from a sweep.json that is this user's own regular file and that
nobody else can write (read through one no-follow descriptor); another one is shown in one line, never run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from landscape_sweep import manifest
from landscape_sweep.status import summary_line, sweep_status

SLURM_LAUNCHER = "hydra_plugins.landscape_sweep_launchers.SlurmLauncher"
REPLACED = ("hydra.sweep.dir=", "hydra.launcher.detach=")


def command(data: dict, sweep: Path) -> list[str]:
    """The sweep's command, pointed at `sweep` (and detached when it ran on the SLURM launcher)."""
    cmd = data["command"]
    args = [a for a in cmd["argv"] if not a.startswith(REPLACED)]
    if "-m" not in args and "--multirun" not in args:
        args.insert(0, "-m")
    args.append(f"hydra.sweep.dir={sweep}")
    if data.get("launcher") == SLURM_LAUNCHER:
        args.append("hydra.launcher.detach=true")
    return [sys.executable, "-m", "landscape_sweep", *args]


def command_error(data: dict) -> str | None:
    """Why the manifest's command cannot be re-run here (one line naming the key, its value and what is allowed), or
    None. Nothing of it is ever executed but its arguments, by this interpreter, in its existing directory."""
    cmd = data["command"]
    argv, python, cwd = cmd.get("argv"), cmd.get("python"), cmd.get("cwd")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return f"command.argv={argv!r}: must be a list of strings (the sweep's arguments)"
    if python is not None and (not isinstance(python, str) or os.path.abspath(python) != sys.executable):
        return (
            f"command.python={python!r}: not this interpreter ({sys.executable}); resubmit runs only its own Python, "
            "never a program sweep.json names: run the resubmit with that Python if you trust it"
        )
    if not isinstance(cwd, str) or not os.path.isabs(cwd) or not os.path.isdir(cwd):
        return f"command.cwd={cwd!r}: must be an existing absolute directory (where the sweep's command ran)"
    return None


def _shown(data: dict, sweep: Path) -> str:
    """The command on one line: as a shell would take it, or as JSON when an argument holds a line break."""
    cmd = command(data, sweep)
    text = shlex.join(cmd)
    return json.dumps(cmd) if any(c in text for c in "\r\n") else text


def read_own_manifest(sweep: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the manifest or None, why its command must not be run or None), read through one O_NOFOLLOW descriptor, so
    the file judged is the file read: a symlink, a file of another user or one writable by others is not trusted."""
    path = manifest.manifest_path(sweep)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # absent, or a symlink
        return None, None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        try:
            data = manifest.as_manifest(json.loads(f.read())) if stat.S_ISREG(st.st_mode) else None
        except (OSError, ValueError):
            return None, None
    why = None
    if st.st_uid != os.getuid():
        why = f"owned by uid {st.st_uid}, not this user ({os.getuid()})"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        why = f"writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return data, why


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_sweep.resubmit", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", help="a sweep started by `python -m landscape_sweep -m ...` (it has a sweep.json)")
    ap.add_argument("--dry-run", action="store_true", help="print the command and the cells, submit nothing")
    args = ap.parse_args(argv)
    sweep = Path(args.sweep_dir).absolute()
    data, untrusted = read_own_manifest(sweep)
    malformed = manifest.manifest_error(sweep) if data is None else None
    if malformed is not None:
        print(f"landscape_sweep.resubmit: {manifest.manifest_path(sweep)}: {malformed}; fix it or re-run the sweep's "
              f"command with hydra.sweep.dir={sweep}", file=sys.stderr)  # fmt: skip
        return 2
    if data is None or not isinstance(data.get("command"), dict):
        print(
            f"landscape_sweep.resubmit: sweep_dir={str(sweep)!r}: no readable {manifest.MANIFEST_NAME}; re-run the "
            f"sweep's command with hydra.sweep.dir={sweep}",
            file=sys.stderr,
        )
        return 2
    error = command_error(data)
    if error is not None:
        print(f"landscape_sweep.resubmit: {manifest.MANIFEST_NAME}: {error}", file=sys.stderr)
        return 2
    if untrusted is not None:
        print(
            f"landscape_sweep.resubmit: {manifest.manifest_path(sweep)}: {untrusted}: its command is not run (its "
            f"arguments could make the job run any program); review it and run it yourself: {_shown(data, sweep)}",
            file=sys.stderr,
        )
        return 2
    # deferred: the pipeline package (omegaconf, its import hook) loads only past the argument checks
    from landscape_sweep.pipeline.prechecks import environment_error

    error = environment_error()  # the cells' lock files are read with it
    if error is not None:
        print(f"landscape_sweep.resubmit: {error}", file=sys.stderr)
        return 2
    cells, _, _ = sweep_status(sweep)
    todo = [c for c in cells if c.state in ("failed", "diverged", "missing", "invalid")]
    if not todo:
        print(f"nothing to resubmit: {summary_line(cells)}")
        return 0
    cmd = command(data, sweep)
    shown = ", ".join(f"#{c.num} ({c.state})" for c in todo)
    print(f"resubmitting {len(todo)} of {len(cells)} cells: {shown}\n{shlex.join(cmd)}", flush=True)
    if args.dry_run:
        return 0
    return subprocess.call(cmd, cwd=data["command"]["cwd"])  # checked by command_error


if __name__ == "__main__":
    sys.exit(main())

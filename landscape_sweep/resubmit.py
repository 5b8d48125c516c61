"""`python -m landscape_sweep.resubmit <sweep_dir>`: run the cells of a sweep that did not complete, again.

It re-runs the sweep's own command (`sweep.json`: its arguments, in its working directory) into the same sweep
dir (`hydra.sweep.dir=<sweep_dir>`); for a SLURM sweep detached (`hydra.launcher.detach=true`). The launcher then
submits only the cells that are not completed and whose earlier job the scheduler no longer holds, with a new report
job after them, and returns at once; a local sweep runs its unfinished cells here (completed ones skip themselves).
The settings are the command's: a config file edited since then changes the cells it touches (they re-run).

sweep.json is data: the program it runs is always this interpreter (`sys.executable`), never one the file names. A
manifest recorded by another Python is refused in one line (run the resubmit with that Python if you trust it), as
is a recorded working directory that is not an existing absolute directory, or arguments that are not strings.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_sweep.resubmit", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", help="a sweep started by `python -m landscape_sweep -m ...` (it has a sweep.json)")
    ap.add_argument("--dry-run", action="store_true", help="print the command and the cells, submit nothing")
    args = ap.parse_args(argv)
    sweep = Path(args.sweep_dir).absolute()
    data = manifest.read_manifest(sweep)
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

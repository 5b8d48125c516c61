"""`python -m landscape_sweep.resubmit <sweep_dir>`: run the cells of a sweep that did not complete, again.

It re-runs the sweep's own command (`sweep.json`: its arguments, working directory and Python) into the same sweep
dir (`hydra.sweep.dir=<sweep_dir>`); for a SLURM sweep detached (`hydra.launcher.detach=true`). The launcher then
submits only the cells that are not completed and whose earlier job the scheduler no longer holds, with a new report
job after them, and returns at once; a local sweep runs its unfinished cells here (completed ones skip themselves).
The settings are the command's: a config file edited since then changes the cells it touches (they re-run).
"""

from __future__ import annotations

import argparse
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
    return [cmd["python"], "-m", "landscape_sweep", *args]


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
    cells, _, _ = sweep_status(sweep)
    todo = [c for c in cells if c.state in ("failed", "diverged", "missing")]
    if not todo:
        print(f"nothing to resubmit: {summary_line(cells)}")
        return 0
    cmd = command(data, sweep)
    shown = ", ".join(f"#{c.num} ({c.state})" for c in todo)
    print(f"resubmitting {len(todo)} of {len(cells)} cells: {shown}\n{shlex.join(cmd)}", flush=True)
    if args.dry_run:
        return 0
    return subprocess.call(cmd, cwd=data["command"]["cwd"])


if __name__ == "__main__":
    sys.exit(main())

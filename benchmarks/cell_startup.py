"""Where a cell process's wall time goes, and what a joblib sweep pays per worker; before/after in one run.

1. One default cell (`python -m landscape_sweep`: mnist1d MLP 2x64, 3 endpoints, 30 epochs, default landscape
   preset, W&B offline), run as a user runs it, under a thin wrapper that notes when the process reaches each
   stage (it times `pipeline.tracking.Tracker` and `pipeline.cell.run_cell`/`record` by wrapping them at import,
   nothing else). Rows: process start to the cell's start (interpreter, imports, config checks, Hydra), the
   imports alone (a fresh interpreter importing what a W&B cell imports: the CLI, the cell, wandb), the W&B run's
   start (what the cell waits for), data, first training step (from process start), training, analysis, W&B's
   finish (the cell's payload, finishing the run, stopping W&B's service), the exit (cell end to process end:
   Hydra, atexit, interpreter teardown), the process's wall time, and what of it is not compute (the wall time
   less training and analysis).
2. Four small cells (depth {1,2} x {sgd, adam}, 2 epochs, 512 samples, landscape=fast, W&B offline) as one sweep
   with the basic launcher (in-process) and with `hydra/launcher=joblib hydra.launcher.n_jobs=2`: wall times,
   their ratio, and the first cell's start in each process.

With `--before DIR` (a checkout of the baseline commit, e.g. `git worktree add --detach ../base <commit>`) every
measurement runs on both trees, alternating their order from repeat to repeat, with the same interpreter and the
same data cache (generated once, before timing), and prints medians side by side with after/before ratios.

    python benchmarks/cell_startup.py [--before DIR] [--repeats 3] [--epochs 30] [--no-sweeps]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# `python -m landscape_sweep ...` with stage times noted (seconds since the process started, from /proc)
WRAPPER = r"""
import atexit, importlib.abc, importlib.machinery, json, os, runpy, sys, time

def _age():
    with open("/proc/self/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return up - start / os.sysconf("SC_CLK_TCK")

T0 = time.perf_counter() - _age()
EV = {"main": time.perf_counter() - T0}
SPANS = {}
PATCH = {
    "landscape_sweep.pipeline.tracking": [("Tracker", "__init__", "wandb_start"), ("Tracker", "wait", "wandb_wait"),
                                          ("Tracker", "log_cell", "wandb_log"), ("Tracker", "close", "wandb_close")],
    "landscape_sweep.pipeline.cell": [(None, "run_cell", "cell"), (None, "record", "record")],
}

def _wrap(owner, attr, key):
    fn = getattr(owner, attr, None)
    if fn is None:
        return
    def timed(*a, **k):
        t = time.perf_counter()
        EV.setdefault(key + "_at", t - T0)
        try:
            return fn(*a, **k)
        finally:
            SPANS[key] = SPANS.get(key, 0.0) + time.perf_counter() - t
            EV[key + "_end"] = time.perf_counter() - T0
    setattr(owner, attr, timed)

class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in PATCH:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            for owner, attr, key in PATCH[name]:
                _wrap(getattr(module, owner) if owner else module, attr, key)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Finder())

@atexit.register  # registered first: runs after every other atexit handler (W&B's included)
def _dump():
    EV["atexit"] = time.perf_counter() - T0
    with open(os.environ["CELL_TIMELINE"], "w") as f:
        json.dump({"events": EV, "spans": SPANS}, f)

sys.argv = ["landscape_sweep", *sys.argv[1:]]
runpy.run_module("landscape_sweep", run_name="__main__", alter_sys=True)
"""

IMPORTS = (
    "import time; t = time.perf_counter(); import landscape_sweep.pipeline.app, landscape_sweep.pipeline.cell; "
    "import wandb; print(time.perf_counter() - t)"
)
ROWS = (
    ("startup", "process start -> cell start"),
    ("imports", "  imports (fresh interpreter)"),
    ("wandb_start", "W&B start (cell waits)"),
    ("data", "data"),
    ("first_step", "first step (from process start)"),
    ("train", "train"),
    ("analysis", "analysis"),
    ("wandb_finish", "W&B finish"),
    ("exit", "exit (cell end -> process end)"),
    ("wall", "total (process wall)"),
    ("overhead", "not compute (total - train - analysis)"),
)
SMALL = ["trainer.max_epochs=2", "data.train_size=512", "endpoints.seeds=[0,1]", "landscape=fast",
         "trainer.enable_progress_bar=false", "model.width=16", "model.depth=1,2", "optimizer=sgd,adam"]  # fmt: skip


def env_for(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "SLURM_"))}
    env.update(PYTHONPATH=str(repo), WANDB_MODE="offline", WANDB_SILENT="true", HYDRA_FULL_ERROR="1")
    return env


def run(args: list[str], repo: Path, cwd: Path, extra_env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env={**env_for(repo), **(extra_env or {})},
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} in {repo} failed:\n{proc.stderr[-3000:]}")
    return wall


def one_cell(repo: Path, work: Path, data_dir: Path, epochs: int, more: list[str]) -> dict[str, float]:
    """One default cell as a process: the rows of the table (seconds)."""
    job, timeline = work / "job", work / "timeline.json"
    args = ["-c", WRAPPER, f"hydra.run.dir={job}", f"paths.data_dir={data_dir}", f"trainer.max_epochs={epochs}", *more]
    wall = run(args, repo, work, {"CELL_TIMELINE": str(timeline)})
    res = json.loads((job / "results.json").read_text())
    assert res["status"] == "completed", res["error"]
    t, tl = res["timing_s"], json.loads(timeline.read_text())
    ev, spans = tl["events"], tl["spans"]
    return {
        "startup": ev["cell_at"], "wandb_start": spans.get("wandb_start", 0.0) + spans.get("wandb_wait", 0.0),
        "data": t["data"], "first_step": t["first_step"], "train": t["train"], "analysis": t["analysis"],
        "wandb_finish": spans.get("wandb_log", 0.0) + spans.get("wandb_close", 0.0),
        "exit": wall - ev["cell_end"], "wall": wall, "overhead": wall - t["train"] - t["analysis"],
    }  # fmt: skip


def imports(repo: Path, work: Path) -> float:
    out = subprocess.run([sys.executable, "-c", IMPORTS], cwd=work, env=env_for(repo), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return float(out.stdout.split()[-1])


def sweep(repo: Path, work: Path, data_dir: Path, launcher: str, more: list[str]) -> dict[str, float]:
    """Four small cells as one sweep: wall time, the sum of the cells' own times, the first cell's start."""
    sweep_dir = work / f"sweep_{launcher}"
    joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    wall = run(["-m", "landscape_sweep", "-m", *joblib, *SMALL, f"hydra.sweep.dir={sweep_dir}",
                f"paths.data_dir={data_dir}", *more], repo, work)  # fmt: skip
    cells = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/results.json"))]
    assert len(cells) == 4 and all(c["status"] == "completed" for c in cells), [c["status"] for c in cells]
    timing = [c["timing_s"] for c in cells]
    return {
        "wall": wall,
        "cells": sum(t["total"] for t in timing),
        "startup": max(t["startup"] for t in timing),  # the (last) first cell of a process to start
    }


def median_rows(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def show(title: str, rows: list[tuple[str, str]], results: dict[str, dict[str, float]]) -> None:
    trees = list(results)
    print(title)
    print(f"{'':<40}" + "".join(f"{t:>10}" for t in trees) + ("    after/before" if len(trees) == 2 else ""))
    for key, label in rows:
        vals = [results[t].get(key) for t in trees]
        line = f"{label:<40}" + "".join(f"{v:>10.2f}" for v in vals)
        if len(trees) == 2 and vals[0]:
            line += f"{vals[1] / vals[0]:>12.2f}x"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, help="a checkout of the baseline commit: run both, alternating")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--no-sweeps", action="store_true", help="only the single cell")
    ap.add_argument("--threads", help="trainer.threads of every cell (default: the config's, auto)")
    args = ap.parse_args()
    more = [f"trainer.threads={args.threads}"] if args.threads else []
    trees = {"before": args.before.resolve(), "after": REPO} if args.before else {"this": REPO}
    root = Path(tempfile.mkdtemp(prefix="landscape_sweep_startup-"))
    data_dir = root / "data"
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs; trees: "
          + ", ".join(f"{k}={v}" for k, v in trees.items()) + f"; {' '.join(more) or 'trainer.threads=auto'}",
          flush=True)  # fmt: skip
    # the mnist1d cache (and its shifted set) is generated once, untimed: every timed cell reads it
    run(["-m", "landscape_sweep", f"hydra.run.dir={root / 'warm'}", f"paths.data_dir={data_dir}", "logger=none",
         "trainer.max_epochs=1", "landscape=fast", "endpoints.seeds=[0,1]"], REPO, root)  # fmt: skip
    cells: dict[str, list] = {k: [] for k in trees}
    imps: dict[str, list] = {k: [] for k in trees}
    sweeps: dict[str, dict[str, list]] = {k: {"basic": [], "joblib": []} for k in trees}
    for i in range(args.repeats):
        order = list(trees) if i % 2 == 0 else list(reversed(trees))
        for name in order:
            work = root / f"{name}{i}"
            work.mkdir()
            cells[name].append(one_cell(trees[name], work, data_dir, args.epochs, more))
            imps[name].append(imports(trees[name], work))
            if not args.no_sweeps:
                for launcher in ("basic", "joblib") if i % 2 == 0 else ("joblib", "basic"):
                    sweeps[name][launcher].append(sweep(trees[name], work, data_dir, launcher, more))
            print(f"repeat {i + 1}/{args.repeats} {name}: cell {cells[name][-1]['wall']:.1f} s", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)\n")
    table = {k: {**median_rows(cells[k]), "imports": statistics.median(imps[k])} for k in trees}
    show(f"one default cell as a process ({args.epochs} epochs, W&B offline), median of {args.repeats}; seconds",
         list(ROWS), table)  # fmt: skip
    if not args.no_sweeps:
        res = {}
        for k in trees:
            b, j = median_rows(sweeps[k]["basic"]), median_rows(sweeps[k]["joblib"])
            res[k] = {"basic": b["wall"], "joblib": j["wall"], "ratio": j["wall"] / b["wall"],
                      "basic_cells": b["cells"], "joblib_cells": j["cells"], "basic_start": b["startup"],
                      "joblib_start": j["startup"]}  # fmt: skip
        rows = [("basic", "basic launcher: wall"), ("joblib", "joblib n_jobs=2: wall"),
                ("ratio", "joblib / basic"), ("basic_cells", "basic: sum of cell times"),
                ("joblib_cells", "joblib: sum of cell times"), ("basic_start", "basic: process start -> cell"),
                ("joblib_start", "joblib: worker start -> first cell")]  # fmt: skip
        show(f"\n4 small cells as one sweep (W&B offline), median of {args.repeats}; seconds", rows, res)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

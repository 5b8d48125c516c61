"""How long the sweep report takes, and how much memory, at sweep scale (1,200 and 10,000 cells).

The cells are synthesised from a real small sweep's results.json files (`--source`; without it a 2-cell mnist1d
sweep is run first, through the CLI as a user runs it): each synthetic cell is a copy of a real cell with its grid
fields and config rewritten (depth × width × optimizer × learning rate) and its measures scaled so that trends
exist, plus the `.hydra/overrides.yaml` a Hydra job has. The report then runs in a fresh process, as
`python -m landscape_sweep.report <sweep_dir>` does, and the benchmark prints its wall time, peak memory (max RSS)
and the time per artefact (`build_report(timings=...)`), then a second run (results cache warm).

    python benchmarks/report_scale.py [--cells 1200] [--source SWEEP_DIR] [--keep DIR]

Grid for 1,200 cells: depth 1-8 × width 8-4096 × 5 optimizers × 3 learning rates (the issue's sweep); larger
`--cells` repeat the grid with more learning rates.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEPTHS = (1, 2, 3, 4, 5, 6, 7, 8)
WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
OPTIMIZERS = ("sgd", "sam", "swa", "adamw", "asam")


def real_sweep(dest: Path) -> Path:
    """A 2-cell mnist1d sweep (short training, fast landscape preset) run through the CLI."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    args = ["-m", "model.width=16,64", "trainer.max_epochs=5", "landscape=fast", "logger=none",
            f"hydra.sweep.dir={dest}", f"paths.data_dir={dest.parent / 'data'}"]  # fmt: skip
    subprocess.run([sys.executable, "-m", "landscape_sweep", *args], env=env, check=True, capture_output=True)
    return dest


def _scale_paths(cell: dict, f: float) -> None:
    for p in cell["connectivity"]:
        for key in ("train_loss", "test_loss"):
            if p.get(key):
                lo = min(p[key][0], p[key][-1])
                p[key] = [lo + f * (v - lo) for v in p[key]]
        for key in ("loss_barrier", "test_loss_barrier", "loss_barrier_mean", "test_loss_barrier_mean"):
            if p.get(key) is not None:
                p[key] *= f


def synth_cell(template: dict, depth: int, width: int, opt: str, lr: float, rng: random.Random) -> dict:
    """A copy of a real cell placed at (depth, width, opt, lr), its barrier and sharpness scaled with a width
    power law (exponent 0.5, depth-dependent offset) and its accuracy with a saturating curve, plus noise."""
    c = copy.deepcopy(template)
    c["cell"].update(depth=depth, width=width, optimizer=opt, num_params=16 * width + (depth - 1) * width * width)
    c["config"].setdefault("model", {}).update(depth=depth, width=width)
    c["config"].setdefault("optimizer", {}).update(name=opt, lr=lr)
    fb = (0.2 + 4 * width**-0.5) * (1 + 0.1 * depth) * (0.6 if "sam" in opt else 1.0) * rng.uniform(0.9, 1.1)
    _scale_paths(c, fb)
    for e in c["endpoints"]:
        sh = e.get("sharpness") or {}
        if sh.get("hessian_top_eigs"):
            sh["hessian_top_eigs"] = [v * fb for v in sh["hessian_top_eigs"]]
        if e.get("test_acc") is not None:
            e["test_acc"] = min(1.0, 0.4 + 0.2 * (1 - math.exp(-width / 64)) + rng.gauss(0, 0.005))
    return c


def synthesise(source: Path, dest: Path, cells: int) -> int:
    """Write `cells` synthetic job dirs under `dest` (0, 1, …); returns how many were written."""
    templates = [json.loads(p.read_text()) for p in sorted(source.glob("*/results.json"))]
    templates = [t for t in templates if t.get("status") == "completed" and t.get("connectivity")]
    if not templates:
        raise SystemExit(f"--source {source}: no completed cell with connectivity results")
    rng = random.Random(0)
    n_lrs = max(1, math.ceil(cells / (len(DEPTHS) * len(WIDTHS) * len(OPTIMIZERS))))
    lrs = [round(0.01 * 10 ** (k / 2), 6) for k in range(n_lrs)]  # 0.01, 0.0316, 0.1, …
    grid = [(d, w, o, lr) for o in OPTIMIZERS for lr in lrs for d in DEPTHS for w in WIDTHS][:cells]
    for i, (d, w, o, lr) in enumerate(grid):
        job = dest / str(i)
        (job / ".hydra").mkdir(parents=True)
        over = [f"model.depth={d}", f"model.width={w}", f"optimizer={o}", f"optimizer.lr={lr}"]
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {x}\n" for x in over))
        cell = synth_cell(templates[i % len(templates)], d, w, o, lr, rng)
        (job / "results.json").write_text(json.dumps(cell))
    return len(grid)


REPORT = """
import json, sys, time
from landscape_sweep.report import build_report
t0 = time.perf_counter()
timings = {}
build_report(sys.argv[1], timings=timings)
timings["total"] = time.perf_counter() - t0
print(json.dumps(timings))
"""


def run_report(sweep: Path) -> tuple[float, float, dict]:
    """(wall s, peak RSS MiB, per-artefact timings) of one report build in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", REPORT, str(sweep)], capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("(peak RSS not above an earlier child's; shown as the maximum so far)")
    return wall, peak / 1024, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=1200)
    ap.add_argument("--source", type=Path, help="a real sweep dir (default: run a 2-cell sweep first)")
    ap.add_argument("--keep", type=Path, help="write the synthetic sweep here and keep it")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="landscape_sweep_report_scale-"))
    try:
        source = args.source or real_sweep(tmp / "source")
        sweep = args.keep or tmp / "sweep"
        if sweep.exists():
            shutil.rmtree(sweep)
        t0 = time.perf_counter()
        n = synthesise(source, sweep, args.cells)
        print(f"synthesised {n} cells from {source} in {time.perf_counter() - t0:.1f}s")
        for label in ("cold", "warm (cache)"):
            wall, rss, timings = run_report(sweep)
            print(f"report {label}: wall {wall:.1f}s, peak RSS {rss:.0f} MiB")
            for k, v in timings.items():
                print(f"  {k:<28} {v:7.2f}s")
        pngs = list((sweep / "figures").rglob("*.png"))
        print(f"{len(pngs)} PNG files, {sum(p.stat().st_size for p in pngs) / 2**20:.1f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

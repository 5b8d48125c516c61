"""Measurement: is a curve the tool calls converged really converged? Every fitted curve of a sweep, refitted longer.

For each completed cell of a sweep (e.g. `python -m landscape_sweep -m experiment=mini_study`) and each of its
Bezier/PolyChain entries, the curve is fitted again from the cell's saved endpoints with the cell's own settings
and data (`pipeline.measures`: the same loader, seed and evaluation as the cell), then with `--factor` (3) times the
epochs that fit used and no early stop (`tol=None`: constant LR, then the same final decay). It prints, per curve,
the barrier of both fits, the relative change, the epochs and whether the rule called the first fit converged, and
at the end the worst drop among converged curves (the claim: no converged curve loses more than `--allowed` of its
barrier, with an absolute floor of `--floor` in loss units for barriers near zero) and the summary per cell size.

    python benchmarks/curve_budget.py <sweep_dir> [--factor 3] [--allowed 0.2] [--floor 0.01] [--threads 1]

Exit status 1 when a converged curve breaks the claim.

Measured on the mini-study's 54 curves (18 cells, 3 pairs each; `--curve` set to the default preset's rule and cap:
`{"max_epochs": 400, "tol": 0.05, "window": 5, "patience": 0.333, "min_epochs": 40, "floor": 0.01}`): 49 converged
after 72-400 epochs (median 165); refitted 3x longer without early stop, their barrier changed by a median of +1 %
(longer curves drift up as often as down) and fell by at most 18 % (4 curves by 15-18 %, all of width 64, whose
curves improve slowest); 5 hit the cap and are reported as upper bounds. The 20-epoch fits of the old fast preset
had recorded barriers 4-30x these converged ones (or more where the converged barrier is 0). Watching the epoch
loss instead of the barrier, converged barriers fell by up to 70 % (9 of these pairs, offline; see
landscape/curves.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from landscape_sweep.landscape import evaluate_path, fit_curve
from landscape_sweep.pipeline.cell import load_cell_data
from landscape_sweep.pipeline.endpoint import load_endpoint
from landscape_sweep.pipeline.measures import analysis_data
from landscape_sweep.results import curve_methods, job_dirs, read_results


def refit(a, b, method: str, ad, conn: dict, seed: int, **budget) -> tuple[float, dict, float]:
    """(train loss barrier, fit record, seconds) of one curve fitted with the cell's settings and `budget`."""
    cc = conn["curve"]
    keys = ("num_bends", "max_epochs", "tol", "window", "patience", "min_epochs", "floor", "lr", "batch_size")
    settings = {k: cc[k] for k in keys if k in cc} | budget
    t0 = time.perf_counter()
    curve = fit_curve(a, b, ad.curve_train, kind=method, seed=seed, **settings)
    seconds = time.perf_counter() - t0
    entry = evaluate_path(curve, ad.train, num_points=conn["num_points"], bn_data=ad.train)
    return float(entry["loss_barrier"]), curve.fit, seconds


def cell_rows(job: Path, factor: float, curve: dict) -> list[dict]:
    """One row per fitted curve of a completed cell (`curve`: settings that replace the cell's own)."""
    r = read_results(job)
    if r is None or r.status != "completed":
        return []
    cfg = r.config
    data = load_cell_data(cfg)
    ad = analysis_data(cfg, data)
    models = [load_endpoint(cfg, data, job / e.checkpoint).eval() for e in r.endpoints]
    conn, rows = dict(cfg["landscape"]["connectivity"]), []
    conn["curve"] = {**conn["curve"], **curve}
    for p in (p for p in r.connectivity if p.method in curve_methods()):
        a, b = models[p.pair[0]], models[p.pair[1]]
        base, fit, s1 = refit(a, b, p.method, ad, conn, cfg["seed"])
        longer, _, s3 = refit(a, b, p.method, ad, conn, cfg["seed"], max_epochs=int(factor * fit["epochs"]), tol=None)
        rows.append({
            "cell": f"{r.cell.get('depth')}x{r.cell.get('width')} {r.cell.get('optimizer')}", "job": job.name,
            "pair": tuple(p.pair), "method": p.method, "recorded": p.loss_barrier, "barrier": base,
            "longer": longer, "epochs": fit["epochs"], "converged": fit["converged"],
            "high_loss": fit.get("high_loss"), "seconds": (s1, s3),
        })  # fmt: skip
    return rows


def breaks(row: dict, allowed: float, floor: float) -> bool:
    """Whether the longer fit lowered the barrier by more than `allowed` (relative) and `floor` (absolute)."""
    drop = row["barrier"] - row["longer"]
    return drop > max(allowed * abs(row["barrier"]), floor)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--factor", type=float, default=3.0, help="the longer fit's epochs / the first fit's epochs")
    ap.add_argument("--allowed", type=float, default=0.2, help="largest relative barrier drop of a converged curve")
    ap.add_argument("--floor", type=float, default=0.01, help="drops below this (loss units) always pass")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", nargs="+", help="only these job dirs (names relative to the sweep), e.g. 0 4 16")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--curve", type=json.loads, default={}, help='curve settings replacing the cells\', as JSON')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'cell':<14}{'job':>5}{'pair':>8}{'method':>10}{'recorded':>10}{'barrier':>9}{'x' + str(args.factor):>9}"
          f"{'change':>8}{'epochs':>7}{'conv':>6}{'high':>6}{'fit s':>12}")  # fmt: skip
    rows = []
    for job in job_dirs(args.sweep_dir):
        if args.jobs and job.name not in args.jobs:
            continue
        for row in cell_rows(job, args.factor, args.curve):
            rows.append(row)
            change = (row["longer"] - row["barrier"]) / abs(row["barrier"]) if row["barrier"] else float("nan")
            flag = " !" if row["converged"] and breaks(row, args.allowed, args.floor) else ""
            print(f"{row['cell']:<14}{row['job']:>5}{str(row['pair']):>8}{row['method']:>10}{row['recorded']:>10.4f}"
                  f"{row['barrier']:>9.4f}{row['longer']:>9.4f}{change:>+8.1%}{row['epochs']:>7}"
                  f"{str(row['converged']):>6}{str(row['high_loss']):>6}"
                  f"{row['seconds'][0]:>6.1f}/{row['seconds'][1]:<5.1f}{flag}", flush=True)  # fmt: skip
    conv = [r for r in rows if r["converged"]]
    bad = [r for r in conv if breaks(r, args.allowed, args.floor)]
    drops = [(r["barrier"] - r["longer"]) / abs(r["barrier"]) for r in conv if r["barrier"]]
    print(f"\n{len(conv)}/{len(rows)} curves converged; longer fits ({args.factor:g}x their epochs, no early stop) "
          f"lowered a converged barrier by > {args.allowed:.0%} (and {args.floor:g}) in {len(bad)}")  # fmt: skip
    if drops:
        print(f"relative drop of converged barriers: median {statistics.median(drops):+.1%}, max {max(drops):+.1%}")
    epochs = [r["epochs"] for r in rows]
    if epochs:
        first, longer = (sum(r["seconds"][i] for r in rows) for i in (0, 1))
        print(f"epochs used: median {statistics.median(epochs):g}, range {min(epochs)}-{max(epochs)}; fit time "
              f"{first:.0f} s (the longer fits {longer:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

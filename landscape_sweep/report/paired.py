"""Each optimizer against the baseline (`sgd` when the sweep has it), paired: the sweep's headline question asked of
cells that differ only in the optimizer.

- Cell pairs: a baseline cell and a cell of another optimizer that agree on every other varied hyperparameter
  (`correlation.varied`: cell fields and config values; an optimizer setting that only changes with the optimizer,
  e.g. `optimizer.rho` when each optimizer has one value, belongs to the optimizer). Groups holding more than one cell
  of an optimizer are ambiguous and left out.
- Within a cell pair, endpoints are paired by seed (same initialisation and data order) and paths by their method
  and the seeds of their two endpoints; a paired difference is other − baseline.
- Per measure: the mean over cell pairs of each cell pair's mean difference; its 95 % interval is a t interval over
  the cell pairs' mean differences (independent networks; m − 1 dof). With a single cell pair it is the cell's own:
  t over seeds for endpoint measures, the jackknife over seeds for paths (pairs share endpoints:
  `results.pair_jackknife_se`). The sign count: paired units (endpoints or paths) where the other optimizer is
  lower, of n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from landscape_sweep.report.correlation import completed, varied
from landscape_sweep.results import CellResult, Stat, summarize, summarize_pairs

BASELINE = "sgd"
PAIRED_NAME = "paired_optimizer.csv"
ENDPOINT_MEASURES = (
    "test_acc", "test_loss", "train_loss", "gen_gap", "ood_gap", "hessian_top_eig", "hessian_trace", "worst_case",
    "average_case", "adaptive_worst_case", "adaptive_average_case", "average_case_ratio",
)  # fmt: skip
PATH_MEASURES = ("loss_barrier", "error_barrier", "test_loss_barrier", "test_error_barrier", "max_train_loss")
COLUMNS = ["optimizer", "baseline", "measure", "cell_pairs", "n", "mean_diff", "se", "dof", "ci95_lo", "ci95_hi",
           "ci", "lower", "cell_pairs_lower"]  # fmt: skip


def baseline_of(optimizers: Sequence[Any]) -> str | None:
    """`sgd` when present, else the first optimizer in sorted order; None with fewer than 2 optimizers."""
    opts = sorted({str(o) for o in optimizers if isinstance(o, str)})
    if len(opts) < 2:
        return None
    return BASELINE if BASELINE in opts else opts[0]


def _follows_optimizer(done: pd.DataFrame, key: str) -> bool:
    """Whether `key` is an optimizer setting (`cfg:optimizer.*`) with one value per optimizer: part of what the
    optimizer is, not a separate knob. Cell fields (depth, width, …) never are."""
    if not key.startswith("cfg:optimizer."):
        return False
    return bool((done.groupby("optimizer")[key].agg(lambda v: v.astype(str).nunique()) <= 1).all())


def cell_pairs(table: pd.DataFrame, baseline: str) -> list[tuple[str, str, str]]:
    """(baseline job, other job, other optimizer) of every pair of completed cells that differ only in the
    optimizer, in the table's order."""
    done = completed(table)
    done = done[done["optimizer"].notna()]
    keys = [k for k in varied(done) if k != "optimizer" and not _follows_optimizer(done, k)]
    groups = done.groupby([done[k].astype(str) for k in keys], sort=False) if keys else [((), done)]
    out = []
    for _, g in groups:
        counts = g["optimizer"].value_counts()
        if counts.get(baseline, 0) != 1:
            continue
        base = str(g.loc[g["optimizer"] == baseline, "job"].iloc[0])
        for _, r in g[g["optimizer"] != baseline].iterrows():
            if counts[r["optimizer"]] == 1:
                out.append((base, str(r["job"]), str(r["optimizer"])))
    return out


def _path_units(r: CellResult, method: str, measure: str) -> dict[tuple, Any]:
    """{(seed, seed) sorted: value} of the cell's paths of `method` (pairs whose indices name no endpoint skipped)."""
    seeds = [e.seed for e in r.endpoints]
    out = {}
    for p in r.connectivity:
        if p.method == method and len(p.pair) == 2 and all(0 <= i < len(seeds) for i in p.pair):
            out[tuple(sorted((seeds[p.pair[0]], seeds[p.pair[1]])))] = p.measure(measure)
    return out


def paired_differences(base: CellResult, other: CellResult, measure: str) -> tuple[list[Any], list[float]]:
    """(units, other − baseline) of one measure over the paired units of two cells: seeds for an endpoint measure,
    seed pairs for a path measure `<method>/<measure>`; units without a finite value on both sides are skipped."""
    if "/" in measure:
        method, _, name = measure.partition("/")
        b, o = _path_units(base, method, name), _path_units(other, method, name)
    else:
        b = {e.seed: e.measure(measure) for e in base.endpoints}
        o = {e.seed: e.measure(measure) for e in other.endpoints}
    units = [u for u in o if u in b and _finite(b[u]) and _finite(o[u])]
    return units, [float(o[u]) - float(b[u]) for u in units]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _aggregate(cells: list[tuple[list[Any], list[float]]], path: bool) -> tuple[Stat, str]:
    """The mean difference with its error: t over the cell pairs' mean differences, or within one cell pair."""
    if len(cells) == 1:
        units, d = cells[0]
        if path:
            return summarize_pairs(zip(units, d)), "jackknife over seeds (one cell pair)"
        return summarize(d), "t over seeds (one cell pair)"
    return summarize(sum(d) / len(d) for _, d in cells), "t over cell pairs"


def measure_row(pairs: list[tuple[CellResult, CellResult]], measure: str) -> dict[str, Any] | None:
    """One row of the paired table for `measure` over the given cell pairs (None when no unit is paired)."""
    cells = [c for c in (paired_differences(b, o, measure) for b, o in pairs) if c[1]]
    if not cells:
        return None
    stat, how = _aggregate(cells, "/" in measure)
    lo, hi = stat.ci95
    diffs = [x for _, d in cells for x in d]
    return {"measure": measure, "cell_pairs": len(cells), "n": len(diffs), "mean_diff": stat.mean, "se": stat.se,
            "dof": stat.dof or math.nan, "ci95_lo": lo, "ci95_hi": hi, "ci": how,
            "lower": sum(x < 0 for x in diffs), "cell_pairs_lower": sum(sum(d) < 0 for _, d in cells)}  # fmt: skip


def paired_table(results: list[CellResult], table: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """One row per (optimizer other than the baseline, measure with a paired value): see the module docstring."""
    base_opt = baseline_of(completed(table)["optimizer"]) if "optimizer" in table else None
    if base_opt is None:
        return pd.DataFrame(columns=COLUMNS)
    by_job = {str(r.job): r for r in results}
    found = cell_pairs(table, base_opt)
    measures = [*ENDPOINT_MEASURES, *(f"{m}/{k}" for m in methods for k in PATH_MEASURES)]
    rows = []
    for opt in dict.fromkeys(o for _, _, o in found):
        pairs = [(by_job[b], by_job[o]) for b, o, oo in found if oo == opt and b in by_job and o in by_job]
        for m in measures:
            row = measure_row(pairs, m)
            if row is not None:
                rows.append({"optimizer": opt, "baseline": base_opt, **row})
    return pd.DataFrame(rows, columns=COLUMNS)

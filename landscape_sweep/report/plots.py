"""Sweep figures (PNG, matplotlib's object API: no pyplot, no global backend switch).

- `heatmap_<metric>.png`: one panel per optimizer (columns) and per combination of the other varied cell fields
  (rows), depth (y) × width (x), one shared colour scale, mean ± std written in each cell; cells that failed,
  diverged or lack the value show the reason on grey.
- `barrier_vs_params.png`: loss barrier (mean ± std over pairs) vs parameter count, one panel per path method,
  colour = optimizer, marker = depth, lines join the widths of one (optimizer, depth).
- `curves_grid.png`: one panel per cell, train (solid) / test (dashed) loss along t for each method, averaged
  over endpoint pairs.
Each function returns the written path, or None when the sweep has nothing to plot.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape_sweep.files import atomic_open
from landscape_sweep.results import CellResult, PathEntry

FACET_KEYS = ("dataset", "arch", "norm", "train_size", "label_noise")
MARKERS = "osD^v<>ph*"


def save_png(fig: Figure, path: Path) -> Path:
    """Save atomically and readable like any new file (`results.atomic_open`)."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    return path


def _sorted(values: Any) -> list:
    """Unique values (NaN dropped): sorted when all are numbers, else in order of first appearance (job order)."""
    vals = list(dict.fromkeys(v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))))
    return sorted(vals) if all(isinstance(v, (int, float)) for v in vals) else vals


def _label(v: Any) -> str:
    """A tick label: 16.0 -> '16' (columns with gaps turn ints into floats)."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _placed(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Cells that know where they sit (cell fields present), and the facet keys varied among completed cells."""
    t = table[table["optimizer"].notna()] if "optimizer" in table else table.iloc[:0]
    done = t[t["status"] == "completed"]
    facets = [k for k in FACET_KEYS if k in done and done[k].astype(str).nunique() > 1]
    return t, facets


def _facet_labels(t: pd.DataFrame, facets: list[str]) -> pd.Series:
    """'k=v, ...' of the varied non-grid cell fields, per row ('' when none vary)."""
    return t.apply(lambda r: ", ".join(f"{k}={r[k]}" for k in facets), axis=1) if len(t) else pd.Series(dtype=str)


def _fmt(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3g}"


def _spread(cells: pd.DataFrame, column: str) -> str:
    """`\n±std (n=k)` of one cell's measure (n: endpoints or pairs); `\n(mean of k cells)` when several."""
    if len(cells) > 1:
        return f"\n(mean of {len(cells)} cells)"
    row = cells.iloc[0]
    s, n = float(row.get(f"{column}_std", math.nan)), float(row.get(f"{column}_n", math.nan))
    return (f"\n±{s:.2g}" if math.isfinite(s) else "\n") + (f" (n={int(n)})" if math.isfinite(n) else "")


def heatmap(table: pd.DataFrame, column: str, title: str, path: Path) -> Path | None:
    """Depth × width heatmap of `column` (mean, with its `_std`/`_n` partners) per optimizer and facet."""
    t, facets = _placed(table)
    mean_col = f"{column}_mean"
    if mean_col not in t or not np.isfinite(t.loc[t["status"] == "completed", mean_col].astype(float)).any():
        return None
    opts = _sorted(t["optimizer"])
    labels = _facet_labels(t, facets)
    rows = _sorted(labels)
    depths, widths = _sorted(t["depth"]), _sorted(t["width"])
    done_vals = t.loc[t["status"] == "completed", mean_col].astype(float)
    vmin, vmax = np.nanmin(done_vals), np.nanmax(done_vals)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5 * abs(vmin or 1), vmax + 0.5 * abs(vmax or 1)
    norm = mpl.colors.Normalize(vmin, vmax)
    cmap = mpl.colormaps["viridis"].with_extremes(bad="#e0e0e0")
    pw, ph = 1.0 + 1.1 * len(widths), 0.9 + 0.8 * len(depths)
    fig = Figure(figsize=(pw * len(opts) + 1.2, ph * len(rows) + 0.8), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(opts), squeeze=False))
    im = None
    for i, facet in enumerate(rows):
        for j, opt in enumerate(opts):
            ax = axes[i, j]
            sub = t[(t["optimizer"] == opt) & (labels == facet)]
            grid = np.full((len(depths), len(widths)), np.nan)
            for a, d in enumerate(depths):
                for b, w in enumerate(widths):
                    c = sub[(sub["depth"] == d) & (sub["width"] == w)]
                    ok = c[c["status"] == "completed"]
                    v = ok[mean_col].astype(float).mean() if len(ok) else math.nan
                    grid[a, b] = v
                    if len(ok) and math.isfinite(v):
                        text = _fmt(v) + _spread(ok, column)
                        color = "white" if norm(v) < 0.55 else "black"
                    elif len(c):
                        text, color = ("n/a" if len(ok) else "\n".join(sorted(set(c["status"])))), "#a00000"
                    else:
                        text, color = "", "black"
                    ax.text(b, a, text, ha="center", va="center", fontsize=8, color=color)
            im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, origin="lower", aspect="auto")
            ax.set_xticks(range(len(widths)), [_label(w) for w in widths])
            ax.set_yticks(range(len(depths)), [_label(d) for d in depths])
            ax.set_xlabel("width")
            ax.set_ylabel("depth")
            ax.set_title(f"{opt}\n{facet}" if facet else f"{opt}", fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), label=title, shrink=0.9)
    fig.suptitle(f"{title} (completed cells; mean ± sample std over n endpoints/pairs)", fontsize=11)
    return save_png(fig, path)


def barrier_vs_params(table: pd.DataFrame, path: Path) -> Path | None:
    """Train loss barrier vs parameter count: one panel per method, colour = optimizer, marker = depth."""
    done = (
        table[(table["status"] == "completed") & table["num_params"].notna()]
        if "num_params" in table
        else table.iloc[:0]
    )
    methods = [c.split("/")[0] for c in table.columns if c.endswith("/num_pairs")]
    methods = [m for m in methods if np.isfinite(done[f"{m}/loss_barrier_mean"].astype(float)).any()]
    if not methods:
        return None
    opts, depths = _sorted(done["optimizer"]), _sorted(done["depth"])
    colors = {o: mpl.colormaps["tab10"](i % 10) for i, o in enumerate(opts)}
    marks = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(depths)}
    fig = Figure(figsize=(4.2 * len(methods) + 1.5, 3.6), layout="constrained")
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    for ax, m in zip(axes, methods):
        for (opt, depth), g in done.groupby(["optimizer", "depth"], sort=False):
            g = g.sort_values("num_params")
            y, e = g[f"{m}/loss_barrier_mean"].astype(float), g[f"{m}/loss_barrier_std"].astype(float).fillna(0)
            x = g["num_params"].astype(float)
            ax.errorbar(x, y, yerr=e, color=colors[opt], marker=marks[depth], ms=6, capsize=3)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(mpl.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(mpl.ticker.EngFormatter(sep=""))
        ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
        ax.axhline(0, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("parameters")
        ax.set_ylabel("train loss barrier")
        ax.set_title(m)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colors[o], lw=2, label=str(o)) for o in opts]
    handles += [Line2D([], [], color="black", marker=marks[d], ls="", label=f"depth {_label(d)}") for d in depths]
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    fig.suptitle("Loss barrier vs parameter count (mean ± std over endpoint pairs; lines join widths)", fontsize=11)
    return save_png(fig, path)


def _mean_curve(entries: list[PathEntry], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean of a curve over pairs, each interpolated onto the first pair's t grid."""
    curves = [(np.asarray(p.t, float), np.asarray(getattr(p, key), float)) for p in entries if getattr(p, key) and p.t]
    if not curves:
        return None
    t0 = curves[0][0]
    return t0, np.nanmean([np.interp(t0, t, y) for t, y in curves], axis=0)


def _grid_slots(table: pd.DataFrame) -> tuple[list, list, dict[tuple, list[str]]]:
    """Rows (optimizer × other varied fields), columns ((depth, width)) and the jobs in each slot; one panel per job
    when cells differ outside the cell fields."""
    t, facets = _placed(table)
    labels = _facet_labels(t, facets)
    row_of = t["optimizer"].astype(str) + labels.map(lambda s: f"\n{s}" if s else "")
    rows, cols = _sorted(row_of), _sorted(zip(t["depth"], t["width"]))
    slots: dict[tuple, list[str]] = {}
    for job, rk, d, w in zip(t["job"], row_of, t["depth"], t["width"]):
        slots.setdefault((rk, (d, w)), []).append(job)
    if any(len(v) > 1 for v in slots.values()):
        return [""], list(t["job"]), {("", j): [j] for j in t["job"]}
    return rows, cols, slots


def _curves_panel(ax: Any, r: CellResult, methods: list[str], colors: dict[str, Any]) -> None:
    """Mean train (solid) / test (dashed) loss along t per method, or the reason there is none."""
    if r.status != "completed" or not r.connectivity:
        reason = r.status if r.status != "completed" else "no connectivity"
        ax.text(0.5, 0.5, reason, ha="center", va="center", transform=ax.transAxes, color="#a00000")
        ax.set_yticks([])
        return
    for m in methods:
        entries = [p for p in r.connectivity if p.method == m]
        for key, style in (("train_loss", "-"), ("test_loss", "--")):
            curve = _mean_curve(entries, key)
            if curve is not None:
                ax.plot(*curve, color=colors[m], ls=style, lw=1.4)
    ax.grid(alpha=0.3)


def curves_grid(results: list[CellResult], table: pd.DataFrame, path: Path, methods: list[str]) -> Path | None:
    """Small multiples: rows = optimizer (× other varied fields), columns = (depth, width)."""
    if not methods or not any(r.connectivity for r in results):
        return None
    by_job = {r.job: r for r in results}
    rows, cols, slots = _grid_slots(table)
    colors = {m: mpl.colormaps["tab10"](i % 10) for i, m in enumerate(methods)}
    fig = Figure(figsize=(2.6 * len(cols) + 1.6, 2.2 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False, sharex=True)
    for i, rk in enumerate(rows):
        for j, ck in enumerate(cols):
            ax, jobs = axes[i, j], slots.get((rk, ck))
            if not jobs:
                ax.set_axis_off()
                continue
            r = by_job[jobs[0]]
            if rk:
                ax.set_title(f"depth {_label(ck[0])}, width {_label(ck[1])}", fontsize=9)
                if j == 0:
                    ax.set_ylabel(f"{rk}\nloss", fontsize=9)
            else:
                ax.set_title(
                    f"{jobs[0]}: {r.cell.get('optimizer')} d={r.cell.get('depth')} w={r.cell.get('width')}", fontsize=8
                )
            _curves_panel(ax, r, methods, colors)
            if i == len(rows) - 1:
                ax.set_xlabel("t")
    handles = [Line2D([], [], color=colors[m], lw=2, label=m) for m in methods]
    handles += [Line2D([], [], color="black", ls=ls, label=name) for ls, name in (("-", "train"), ("--", "test"))]
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    fig.suptitle("Loss along the paths between endpoints (mean over pairs)", fontsize=11)
    return save_png(fig, path)

"""Where the sharpness sits: per-block curvature (`landscape.sharpness.per_block`) against the block's position.

- `block_figure`: a block measure (top Hessian eigenvalue or trace of the block's diagonal Hessian block) vs the
  block's relative position in the network (0 = first block, 1 = the head), one line per depth, one panel per
  optimizer × width (× facet values); error bars = the cell's standard error over its endpoints (std/√n).
- `blocks_section`: report.md's table of the depth-comparable summaries (`block/first_trace_fraction`,
  `block/last_trace_fraction`, `block/sharpest_position`) per cell.

Block order comes from the names every family uses (`models/*.param_blocks`): `stem`, then `layer<i>` / `stage<i>`
by number, then `head`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from landscape_sweep.report import facets as fc
from landscape_sweep.report.plots import (
    MAX_PANELS,
    Drawn,
    axis_labels,
    errorbars,
    facet_cols,
    facet_panels,
    facet_slots,
    panel_grid,
    panel_title,
    save_png,
    unique_sorted,
)
from landscape_sweep.results import BLOCK_MEASURES, BLOCK_SUMMARIES

BLOCK_LABELS = {"hessian_top_eig": "top Hessian eigenvalue of the block", "hessian_trace": "Hessian trace of the block"}
_COLUMN = re.compile(r"^block/([^/]+)/([a-z_]+)_mean$")


def block_order(name: str) -> tuple[int, float, str]:
    """Forward position of a block name: `stem`, then numbered blocks by number, then `head`."""
    if name == "stem":
        return (0, 0.0, name)
    if name == "head":
        return (2, 0.0, name)
    m = re.search(r"(\d+)$", name)
    return (1, float(m.group(1)) if m else math.inf, name)


def block_names(table: pd.DataFrame, measure: str) -> list[str]:
    """Blocks with a `block/<name>/<measure>` column, in forward order."""
    names = [m.group(1) for c in table.columns if (m := _COLUMN.match(c)) and m.group(2) == measure]
    return sorted(dict.fromkeys(names), key=block_order)


def block_figure(view: fc.View, measure: str, path: Path) -> Drawn | None:
    """`block/<name>/<measure>` vs block position; None when no completed cell measured per-block curvature."""
    blocks = block_names(view.table, measure)
    done = view.cols(*(f"block/{b}/{measure}" for b in blocks), done=True)
    if not blocks or done.empty:
        return None
    means = done[[f"block/{b}/{measure}_mean" for b in blocks]].astype(float)
    done = done[np.isfinite(means).any(axis=1)]
    if done.empty:
        return None
    split = [*view.split, "width"]  # the lines are depths: every other grid key is a panel
    all_panels = facet_panels(done, split)
    panels = all_panels[:MAX_PANELS]
    depths = unique_sorted(done["depth"])
    cmap = mpl.colormaps["viridis"]
    colors = {d: cmap(i / max(1, len(depths) - 1) * 0.9) for i, d in enumerate(depths)}
    ncols = facet_cols(done)
    fig, axes = panel_grid(len(panels), ncols, 3.0, 2.3, right=1.5, share=True, slots=facet_slots(panels, ncols))
    values = []
    for ax, (combo, opt, sub) in zip(axes, panels):
        for d in depths:
            rows = sub[sub["depth"] == d]
            y, e = [], []
            for b in blocks:  # replicate cells (differing only in a seed) are averaged, as in every figure
                m = rows[f"block/{b}/{measure}_mean"].astype(float).mean() if len(rows) else math.nan
                if math.isfinite(m):
                    y.append(m)
                    e.append(rows.get(f"block/{b}/{measure}_se", pd.Series(dtype=float)).astype(float).mean())
            if not y:
                continue
            x = np.arange(len(y)) / (len(y) - 1) if len(y) > 1 else np.zeros(1)
            errorbars(ax, x, y, e, colors[d])
            values += y
        panel_title(ax, f"{opt}\n{fc.label(combo, split)}")
        ax.set_xticks([0, 0.5, 1], ["first", "middle", "head"])
        ax.set_xlim(-0.08, 1.08)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    v = np.asarray(values, float)
    log = len(v) and (v > 0).all() and v.max() / v.min() > 20
    if log:
        axes[0].set_yscale("log")  # shared y: every panel
    label = BLOCK_LABELS.get(measure, measure)
    axis_labels(axes, "block position (first block … head)", label + (" (log)" if log else ""))
    handles = [Line2D([], [], color=colors[d], marker="o", ms=3, label=f"depth {fc.value_label(d)}") for d in depths]
    fig.legend(handles=handles, loc="center right", fontsize=7.5, frameon=False)
    fig.suptitle(f"Where sharpness concentrates: {label}\n(one y scale for every panel)", fontsize=10)
    text = (
        f"The {label} — the curvature of the loss in that block's parameters with all other parameters fixed (the "
        "block's diagonal block of the Hessian) — at each block's relative position: block i of n at i/(n − 1), "
        "0 = the first block (MLP `layer1`, the input layer; conv nets `stem` or `stage1`), 1 = the classifier "
        "`head`. One line per depth, one panel per optimizer and width. "
    ) + fc.caption(split, view.pooled, "mean ± standard error over its endpoints")
    if len(all_panels) > MAX_PANELS:
        text += f" Only the first {MAX_PANELS} panels are shown: narrow the cells with report.select."
    return Drawn([save_png(fig, path)], text)


def _pm(row: pd.Series, stem: str) -> str:
    m, s, n = (float(row.get(f"{stem}{x}", math.nan)) for x in ("_mean", "_std", "_n"))
    if not math.isfinite(m):
        return ""
    n = int(n) if math.isfinite(n) else 1
    return f"{m:.3g} ± {s:.2g} ({n})" if math.isfinite(s) and n >= 2 else f"{m:.3g} (n={n})"


def blocks_section(table: pd.DataFrame, max_rows: int = 100) -> str:
    """report.md: per completed cell with per-block curvature, where its trace and top eigenvalue concentrate."""
    cols = [f"block/{s}_mean" for s in BLOCK_SUMMARIES]
    if not any(c in table for c in cols):
        return ""
    done = table[(table["status"] == "completed") & table[[c for c in cols if c in table]].notna().any(axis=1)]
    if done.empty:
        return ""
    keys = [k for k in ("arch", "depth", "width", "optimizer") if k in done]
    rows = []
    for _, r in done.head(max_rows).iterrows():
        blocks = block_names(done.loc[[r.name]].dropna(axis=1, how="all"), next(iter(BLOCK_MEASURES)))
        row = [fc.value_label(r[k]) for k in keys] + [len(blocks)]
        rows.append(row + [_pm(r, f"block/{s}") for s in BLOCK_SUMMARIES])
    headers = [*keys, "blocks", "first-block trace share", "last-block (head) trace share", "sharpest block position"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = (
        "Per cell, mean ± sample std (n) over endpoints. Trace share: the block's Hutchinson trace over the sum of "
        "the block traces (the block traces add up to the full Hessian trace, so this is the block's share of it); "
        "sharpest block position: where the block with the largest top eigenvalue sits (0 = first block, 1 = the "
        "head). Per-block values: `block/<block>/hessian_top_eig`, `…/hessian_trace` in `sweep_results.csv`; "
        "figures `blocks_hessian_top_eig` and `blocks_hessian_trace` below.\n\n"
    )
    more = f"\n\n_First {max_rows} of {len(done)} cells; all of them are in `sweep_results.csv`._"
    return text + "\n".join(lines) + (more if len(done) > max_rows else "")

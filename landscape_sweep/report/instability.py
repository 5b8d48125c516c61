"""Instability analysis in the report (`endpoints.mode=spawn`; Frankle et al. 2020).

Reads the sweep table's `instability/<k>/<measure>_mean/_se/_n` columns (`results.cell_stats`: over the child
pairs of spawn epoch k) and `stable_epoch_mean`:
- `instability_figure`: the test error barrier against the children's mean (Frankle's instability) vs spawn epoch
  k, mean over child pairs ± standard error (jackknife over children), one line per width (colour) and depth
  (marker), one panel per optimizer (× facets), the 2 % stability threshold dashed;
- `stable_section`: report.md's table of the stable epoch of every spawn cell, with its barriers per k.
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
from landscape_sweep.report.md import md_table
from landscape_sweep.report.plots import (
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
from landscape_sweep.results import STABLE_MEASURE, STABLE_THRESHOLD

MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def spawn_epochs(table: pd.DataFrame, measure: str = STABLE_MEASURE) -> list[int]:
    """The spawn epochs k with a `instability/<k>/<measure>_mean` column, in order."""
    pattern = re.compile(rf"instability/(\d+)/{re.escape(measure)}_mean$")
    return sorted({int(m.group(1)) for c in table.columns if (m := pattern.match(c))})


def _stderr(row: pd.Series, stem: str) -> float:
    """The cell's standard error of the mean over child pairs: the jackknife over children (pairs share them)."""
    return float(row.get(f"{stem}_se", math.nan))


def instability_figure(view: fc.View, path: Path, measure: str = STABLE_MEASURE) -> Drawn | None:
    """Barrier `measure` vs spawn epoch (None without spawn cells); see the module docstring."""
    ks = spawn_epochs(view.table, measure)
    if not ks:
        return None
    stems = [f"instability/{k}/{measure}" for k in ks]
    done = view.cols(*stems, done=True)
    done = done[np.isfinite(done[[f"{s}_mean" for s in stems]].astype(float)).any(axis=1)]
    if done.empty:
        return None
    widths, depths = unique_sorted(done["width"]), unique_sorted(done["depth"])
    cmap = mpl.colormaps["viridis"]
    colors = {w: cmap(i / max(1, len(widths) - 1) * 0.9) for i, w in enumerate(widths)}
    markers = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(depths)}
    panels = facet_panels(done, view.split)
    ncols = facet_cols(done)
    fig, axes = panel_grid(len(panels), ncols, 3.2, 2.4, right=1.5, share=True, slots=facet_slots(panels, ncols))
    for ax, (combo, opt, sub) in zip(axes, panels):
        for (w, d), g in sub.groupby(["width", "depth"], sort=True):
            x, y, e = [], [], []
            for k, s in zip(ks, stems):
                # replicate cells (differing only in a seed) are averaged, as in every figure; one cell: its stderr
                vals = g[f"{s}_mean"].astype(float)
                if not np.isfinite(vals).any():
                    continue
                x.append(k)
                y.append(100 * float(np.nanmean(vals)))
                e.append(100 * _stderr(g.iloc[0], s) if len(g) == 1 else math.nan)
            if x:
                errorbars(ax, x, y, e, colors[w], marker=markers[d])
        ax.axhline(100 * STABLE_THRESHOLD, color="grey", ls="--", lw=1.0)
        ax.set_ylim(bottom=0)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(ks)
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        panel_title(ax, f"{opt}" + (f"\n{fc.label(combo, view.split)}" if view.split else ""))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    base = measure.removesuffix("_mean").replace("_", " ")
    axis_labels(
        axes, "spawn epoch k", f"{base} (%)" + ("\nvs the children's mean" if measure.endswith("_mean") else "")
    )
    handles = [Line2D([], [], color=colors[w], lw=1.2, label=f"width {fc.value_label(w)}") for w in widths]
    if len(depths) > 1:
        handles += [Line2D([], [], color="black", marker=markers[d], ls="", label=f"depth {d}") for d in depths]
    handles.append(Line2D([], [], color="grey", ls="--", label=f"stable: < {100 * STABLE_THRESHOLD:g} %"))
    fig.legend(handles=handles, loc="center right", fontsize=7.5, frameon=False)
    fig.suptitle("Instability vs spawn epoch (Frankle et al. 2020)", fontsize=10)
    text = fc.caption(
        view.split,
        view.pooled,
        "mean over its child pairs at each spawn epoch ± standard error (jackknife over children)",
    )
    text += (
        f" The children of spawn epoch k start from the parent's full training state after k epochs (k = 0: its "
        f"initialisation) and differ only in data order; y: max over the linear path of the test error minus the "
        f"children's mean error (BatchNorm recomputed). Dashed: the {100 * STABLE_THRESHOLD:g} % stability threshold."
    )
    return Drawn([save_png(fig, path)], text)


def stable_section(table: pd.DataFrame, measure: str = STABLE_MEASURE) -> str | None:
    """report.md's table of stable epochs (None without spawn cells): one row per completed spawn cell."""
    ks = spawn_epochs(table, measure)
    if not ks:
        return None
    done = table[table["status"] == "completed"]
    done = done[np.isfinite(done[[f"instability/{k}/{measure}_mean" for k in ks]].astype(float)).any(axis=1)]
    headers = ["job", "arch", "depth", "width", "optimizer", "stable epoch", *(f"k={k}" for k in ks)]
    rows = []
    for _, r in done.iterrows():
        stable = r.get("stable_epoch_mean", math.nan)
        measured = [k for k in ks if math.isfinite(float(r.get(f"instability/{k}/{measure}_mean", math.nan)))]
        row = [r["job"], *(fc.value_label(r.get(c)) for c in ("arch", "depth", "width", "optimizer"))]
        row.append(f"{int(stable)}" if math.isfinite(float(stable)) else f"none ≤ {max(measured)}")
        for k in ks:
            stem = f"instability/{k}/{measure}"
            m, n = float(r.get(f"{stem}_mean", math.nan)), r.get(f"{stem}_n", math.nan)
            se = _stderr(r, stem)
            cell = (
                "" if not math.isfinite(m) else f"{100 * m:.2g}" + (f" ± {100 * se:.1g}" if math.isfinite(se) else "")
            )
            row.append(cell + (f" ({int(n)})" if math.isfinite(m) else ""))
        rows.append(row)
    text = (
        f"Cells trained with `endpoints.mode=spawn`. Stable epoch: the earliest spawn epoch k whose children's mean "
        f"test error barrier against their mean (`{measure}`) is below {100 * STABLE_THRESHOLD:g} % (Frankle et al. "
        f"2020); `none ≤ k`: unstable at every measured k. k=…: that barrier in %, mean ± standard error (the "
        f"jackknife over children, since child pairs share children) (number of child pairs).\n\n"
    )
    return text + md_table(headers, rows)

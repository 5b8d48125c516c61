"""Sweep figures (PNG, matplotlib's object API: no pyplot, no global backend switch), readable at any sweep size.

Rules every figure follows: panels wrap at 4 a row; a figure whose size grows with the sweep is paginated (at most
30 panels a page); one colour scale / y range per figure (heatmaps) or page (curves), stated; cells that differ in
a hyperparameter the figure does not show are never averaged: the figure is split by it (`facets`), and its caption
says what each mark is a mean over.

- `heatmap`: depth × width per optimizer (× facet values), mean of the cell's endpoints/pairs; annotated with
  mean ± se (n) while the grid is small enough to read, colour only (and values in sweep_results.csv) beyond.
- `barrier_vs_params`: loss barrier vs parameter count, one panel per path method (× facet values).
- `curves_pages`: loss along the paths, one small multiple per cell, a page per optimizer (× facet values).
Each returns a `Drawn` (paths and caption), or None when the sweep has nothing to plot.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape_sweep.files import atomic_open
from landscape_sweep.report import facets as fc
from landscape_sweep.report.facets import value_label as _label
from landscape_sweep.report.multiples import MAX_COLS, MAX_PANELS, Panel, draw_page, page_paths, paginate
from landscape_sweep.results import CellResult, PathEntry

MARKERS = "osD^v<>ph*"
DPI = 100
ANNOTATE_MAX = 30  # heatmap grids with more squares than this are drawn without numbers in them


@dataclass
class Drawn:
    """A written figure or page set and what a reader must know to read it."""

    paths: list[Path]
    caption: str


def save_png(fig: Figure, path: Path) -> Path:
    """Save atomically and readable like any new file (`files.atomic_open`)."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=DPI)
    return path


def unique_sorted(values: Any) -> list:
    """Unique values (NaN dropped): sorted when all are numbers, else in order of first appearance (job order)."""
    vals = list(dict.fromkeys(v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))))
    return sorted(vals) if all(isinstance(v, (int, float)) for v in vals) else vals


def _fmt(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3g}"


def fig_title(fig: Figure, text: str, fontsize: float = 10) -> None:
    """The figure's title, wrapped to its width (a narrow one-panel figure cut a one-line title off at both sides)."""
    chars = max(20, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))  # ~0.55 em a character
    fig.suptitle("\n".join(textwrap.wrap(text, chars)), fontsize=fontsize)


def panel_title(ax: Any, text: str, fontsize: float = 8.5) -> None:
    """A panel title as plain text: `Axes.set_title` re-measures every tick label to place itself (~70 ms an
    axes, minutes over a large sweep's figures)."""
    ax.text(0.5, 1.03, text, transform=ax.transAxes, ha="center", va="bottom", fontsize=fontsize)


def errorbars(ax: Any, x: Any, y: Any, e: Any, color: Any, marker: str = "o", ms: float = 3) -> None:
    """Line with markers and vertical ±e bars: two artists (`Axes.errorbar` makes five)."""
    ax.plot(x, y, color=color, marker=marker, ms=ms, lw=1.1)
    e = np.nan_to_num(np.asarray(e, float))
    ax.vlines(x, np.asarray(y, float) - e, np.asarray(y, float) + e, color=color, lw=0.9)


def panel_grid(
    n_panels: int,
    ncols: int,
    pw: float,
    ph: float,
    right: float = 1.4,
    top: float = 0.9,
    share: bool = False,
    slots: list[tuple[int, int]] | None = None,
) -> tuple:
    """(fig, axes list) for `n_panels` panels of pw × ph inches, in rows of `ncols` or at the given (row, col)
    `slots`; fixed margins (no layout engine: constrained layout costs seconds on large grids). `right`/`top`:
    margins in inches (colour bar, legend; suptitle). `share`: one x and one y range for every panel, tick
    labels only on the outer ones (panels compare directly, and a large grid draws a fraction of the tick text)."""
    slots = slots or [divmod(i, ncols) for i in range(n_panels)]
    nrows = max(r for r, _ in slots) + 1
    left, bottom = 0.75, 0.6
    wgap, hgap = (0.25, 0.5) if share else (0.55, 0.75)
    fw, fh = left + ncols * pw + (ncols - 1) * wgap + right, bottom + nrows * ph + (nrows - 1) * hgap + top
    fig = Figure(figsize=(fw, fh))
    fig.subplots_adjust(left=left / fw, right=1 - right / fw, bottom=bottom / fh, top=1 - top / fh,
                        wspace=wgap / pw, hspace=hgap / ph)  # fmt: skip
    grid = fig.subplots(nrows, ncols, squeeze=False, sharex=share, sharey=share)
    used = set(slots)
    for r in range(nrows):
        for c in range(ncols):
            if (r, c) not in used:
                grid[r, c].set_axis_off()
    axes = [grid[r, c] for r, c in slots]
    for (r, c), ax in zip(slots, axes):  # read by `axis_labels`: where the outer panels are
        ax.slot_outer = (c == 0 or (r, c - 1) not in used, (r + 1, c) not in used)
        if share:
            ax.tick_params(labelleft=ax.slot_outer[0], labelbottom=ax.slot_outer[1])
    return fig, axes


def axis_labels(axes: list[Any], xlabel: str, ylabel: str, shared: bool = True) -> None:
    """Axis labels on every panel, or (`shared`) only where `panel_grid` put outer tick labels."""
    for ax in axes:
        left, bottom = getattr(ax, "slot_outer", (True, True)) if shared else (True, True)
        ax.set_xlabel(xlabel if bottom else "", fontsize=8)
        ax.set_ylabel(ylabel if left else "", fontsize=8)


def facet_slots(panels: list[tuple[dict, Any, pd.DataFrame]], ncols: int) -> list[tuple[int, int]]:
    """(row, col) of each facet panel: each facet combination starts a row (its optimizers wrap at `ncols`), so
    a column holds one optimizer throughout."""
    slots, row, col, last = [], -1, ncols, None
    for combo, _, _ in panels:
        if combo != last or col >= ncols:
            row, col, last = row + 1, 0, combo
        slots.append((row, col))
        col += 1
    return slots


def facet_cols(t: pd.DataFrame) -> int:
    """Columns of a facet grid: one per optimizer up to 5 (a row then holds one facet value), else 4."""
    n = len(unique_sorted(t["optimizer"]))
    return n if n <= 5 else MAX_COLS


def facet_panels(t: pd.DataFrame, split: list[str]) -> list[tuple[dict, Any, pd.DataFrame]]:
    """(facet values, optimizer, rows) per panel: facet combinations in order, optimizers within each."""
    combos = t[split].drop_duplicates().to_dict("records") if split else [{}]
    out = []
    for combo in combos:
        sub = t
        for k, v in combo.items():
            sub = sub[sub[k].astype(str) == str(v)]
        for opt in unique_sorted(sub["optimizer"]):
            out.append((combo, opt, sub[sub["optimizer"] == opt]))
    return out


def _spread(ok: pd.DataFrame, column: str) -> str:
    """`\n±se (n=k)` of one cell's measure (its standard error); `\n(mean of k cells)` when replicate cells share
    the square."""
    if len(ok) > 1:
        return f"\n(mean of {len(ok)} cells)"
    row = ok.iloc[0]
    s, n = float(row.get(f"{column}_se", math.nan)), float(row.get(f"{column}_n", math.nan))
    return (f"\n±{s:.2g}" if math.isfinite(s) else "\n") + (f" (n={int(n)})" if math.isfinite(n) else "")


def _status_text(statuses: list[str], annotate: bool) -> str:
    return "\n".join(sorted(set(statuses))) if annotate else "×"


def heatmap(view: fc.View, column: str, title: str, path: Path) -> Drawn | None:
    """Depth × width heatmap of `column` (mean, with its `_se`/`_n` partners) per optimizer and facet value;
    pages `<stem>_p<k>.png` when there are more than 30 panels."""
    t, mean_col, split = view.cols(column), f"{column}_mean", view.split
    done_vals = t.loc[t["status"] == "completed", mean_col].astype(float) if mean_col in t else pd.Series([])
    if not np.isfinite(done_vals).any():
        return None
    depths, widths = unique_sorted(t["depth"]), unique_sorted(t["width"])
    vmin, vmax = float(np.nanmin(done_vals)), float(np.nanmax(done_vals))
    if vmin == vmax:
        vmin, vmax = vmin - 0.5 * abs(vmin or 1), vmax + 0.5 * abs(vmax or 1)
    norm = mpl.colors.Normalize(vmin, vmax)
    cmap = mpl.colormaps["viridis"].with_extremes(bad="#e0e0e0")
    annotate = len(depths) * len(widths) <= ANNOTATE_MAX
    di, wi = {d: i for i, d in enumerate(depths)}, {w: i for i, w in enumerate(widths)}
    panels = facet_panels(t, split)
    ncols = facet_cols(t)
    pages = paginate(panels)
    paths = []
    for k, (page, out) in enumerate(zip(pages, page_paths(path, len(pages), number_one=False)), 1):
        pw = min(4.5, 0.8 + 0.75 * len(widths)) if annotate else min(3.2, 0.6 + 0.22 * len(widths))
        ph = min(4.0, 0.6 + 0.55 * len(depths)) if annotate else min(2.8, 0.5 + 0.2 * len(depths))
        fig, axes = panel_grid(len(page), ncols, pw, ph, share=True, slots=facet_slots(page, ncols))
        im = None
        for ax, (combo, opt, sub) in zip(axes, page):
            grid = np.full((len(depths), len(widths)), np.nan)
            for (d, w), c in sub.groupby(["depth", "width"], sort=False):
                a, b = di[d], wi[w]
                ok = c[c["status"] == "completed"]
                v = ok[mean_col].astype(float).mean() if len(ok) else math.nan
                grid[a, b] = v
                if math.isfinite(v):
                    if annotate:
                        color = "white" if norm(v) < 0.55 else "black"
                        ax.text(b, a, _fmt(v) + _spread(ok, column), ha="center", va="center", fontsize=7, color=color)
                else:
                    text = "n/a" if len(ok) and annotate else _status_text(list(c["status"]), annotate)
                    ax.text(b, a, text, ha="center", va="center", fontsize=7, color="#a00000")
            im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, origin="lower", aspect="auto")
            step = max(1, math.ceil(len(widths) / 8))
            ax.set_xticks(range(0, len(widths), step), [_label(w) for w in widths[::step]], fontsize=7)
            ax.set_yticks(range(len(depths)), [_label(d) for d in depths], fontsize=7)
            panel_title(ax, f"{opt}" + (f"\n{fc.label(combo, split)}" if split else ""))
        axis_labels(axes, "width", "depth")
        cax = fig.add_axes((1 - 1.05 / fig.get_figwidth(), 0.2, 0.18 / fig.get_figwidth(), 0.6))
        fig.colorbar(im, cax=cax, label=f"{title}\n(one scale for every panel)")
        pages_note = f", page {k}/{len(pages)}" if len(pages) > 1 else ""
        fig_title(fig, f"{title} (completed cells{pages_note})")
        paths.append(save_png(fig, out))
    text = fc.caption(split, view.pooled, "mean over its endpoints (or endpoint pairs for path measures)")
    if annotate:
        text += (
            " Numbers: mean ± standard error (n) of the cell (over endpoint pairs: the jackknife over "
            "endpoints, since pairs share endpoints)."
        )
    else:
        text += " Too many squares to print numbers: read them in sweep_results.csv; × marks cells without a value."
    return Drawn(paths, text)


def barrier_vs_params(view: fc.View, methods: list[str], path: Path) -> Drawn | None:
    """Train loss barrier vs parameter count: one panel per method (× facet values), colour = optimizer, marker =
    depth, lines join the widths of one (optimizer, depth)."""
    done = view.cols(*(f"{m}/loss_barrier" for m in methods), done=True)
    done = done[done["num_params"].notna()] if "num_params" in done else done.iloc[:0]
    methods = [m for m in methods if np.isfinite(done.get(f"{m}/loss_barrier_mean", pd.Series([])).astype(float)).any()]
    if not methods:
        return None
    split = view.split
    combos = done[split].drop_duplicates().to_dict("records") if split else [{}]
    panels = [(combo, m) for combo in combos for m in methods][:MAX_PANELS]
    opts, depths = unique_sorted(done["optimizer"]), unique_sorted(done["depth"])
    colors = {o: mpl.colormaps["tab10"](i % 10) for i, o in enumerate(opts)}
    marks = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(depths)}
    fig, axes = panel_grid(len(panels), min(MAX_COLS, len(panels)), 3.4, 2.8, right=1.6)
    for ax, (combo, m) in zip(axes, panels):
        sub = done
        for k, v in combo.items():
            sub = sub[sub[k].astype(str) == str(v)]
        for (opt, depth), g in sub.groupby(["optimizer", "depth"], sort=False):
            cols = ["num_params", f"{m}/loss_barrier_mean", f"{m}/loss_barrier_se"]
            g = g[cols].groupby("num_params", as_index=False).mean().sort_values("num_params")
            y, e = g[cols[1]].astype(float), g[cols[2]].astype(float).fillna(0)
            errorbars(ax, g["num_params"].astype(float), y, e, colors[opt], marks[depth], ms=4)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(mpl.ticker.EngFormatter(sep=""))
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax.axhline(0, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("parameters", fontsize=8)
        ax.set_ylabel("train loss barrier", fontsize=8)
        panel_title(ax, m + (f"\n{fc.label(combo, split)}" if split else ""))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colors[o], lw=2, label=str(o)) for o in opts]
    handles += [Line2D([], [], color="black", marker=marks[d], ls="", label=f"depth {_label(d)}") for d in depths]
    fig.legend(handles=handles, loc="center right", fontsize=7.5, frameon=False)
    fig_title(fig, "Loss barrier vs parameter count (mean ± standard error over endpoint pairs; lines join widths)")
    text = fc.caption(split, view.pooled, "mean ± standard error over its endpoint pairs (jackknife over endpoints)")
    if len(combos) * len(methods) > MAX_PANELS:
        text += f" Only the first {MAX_PANELS} panels are shown: narrow the cells with report.select."
    return Drawn([save_png(fig, path)], text)


def _mean_curve(entries: list[PathEntry], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean of a curve over pairs, each interpolated onto the first pair's t grid."""
    curves = [(np.asarray(p.t, float), np.asarray(getattr(p, key), float)) for p in entries if getattr(p, key) and p.t]
    if not curves:
        return None
    t0 = curves[0][0]
    return t0, np.nanmean([np.interp(t0, t, y) for t, y in curves], axis=0)


def _curve_panel(r: CellResult | None, title: str, methods: list[str], new_row: bool) -> Panel:
    p = Panel(title, new_row=new_row)
    if r is None or r.status != "completed" or not r.connectivity:
        p.note = "no connectivity" if r is not None and r.status == "completed" else (r.status if r else "missing")
        return p
    for m in methods:
        entries = [e for e in r.connectivity if e.method == m]
        for key in ("train_loss", "test_loss"):
            curve = _mean_curve(entries, key)
            if curve is not None:
                p.lines.append((*curve, (m, key)))
    return p


def curves_pages(results: list[CellResult], view: fc.View, path: Path, methods: list[str]) -> Drawn | None:
    """Loss along the paths (train solid, test dashed; mean over pairs), one small multiple per cell. One page
    per optimizer and facet value with a row per depth (widths wrap at 4), at most 30 panels a page, files
    `<stem>_p<k>.png`."""
    if not methods or not any(r.connectivity for r in results):
        return None
    by_job = {r.job: r for r in results}
    t, split = view.cols(), view.split
    colors = {m: mpl.colormaps["tab10"](i % 10) for i, m in enumerate(methods)}
    styles = {(m, k): {"colors": [colors[m]], "lw": 1.1, "linestyles": "-" if k == "train_loss" else "--"}
              for m in methods for k in ("train_loss", "test_loss")}  # fmt: skip
    legend = [Line2D([], [], color=colors[m], lw=2, label=m) for m in methods]
    legend += [Line2D([], [], color="black", ls=ls, label=n) for ls, n in (("-", "train"), ("--", "test"))]
    figs = []
    for combo, opt, sub in facet_panels(t, split):
        panels = []
        for d in unique_sorted(sub["depth"]):
            for i, w in enumerate(unique_sorted(sub[sub["depth"] == d]["width"])):
                jobs = sub[(sub["depth"] == d) & (sub["width"] == w)]["job"].tolist()
                title = f"depth {_label(d)}, width {_label(w)}" + (f" ({len(jobs)} cells)" if len(jobs) > 1 else "")
                panels.append(_curve_panel(by_job.get(jobs[0]), title, methods, new_row=i == 0))
        for k, page in enumerate(pages := paginate(panels)):
            head = f"{opt}" + (f", {fc.label(combo, split)}" if split else "")
            more = f" ({k + 1}/{len(pages)})" if len(pages) > 1 else ""
            figs.append(draw_page(page, styles, title=f"Loss along the paths: {head}{more}", x_range=(0.0, 1.0),
                                  x_label="t", y_label="loss (mean over endpoint pairs)", legend=legend))  # fmt: skip
    paths = [save_png(fig, out) for fig, out in zip(figs, page_paths(path.with_suffix(".png"), len(figs)))]
    text = fc.caption(split, [], "mean over its endpoint pairs") + (
        " One y range per page; a line leaving its frame is clipped. Where several cells share a slot (replicates)"
        " the first is drawn."
    )
    return Drawn(paths, text)

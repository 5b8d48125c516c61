"""Figures for the research questions: trends with width and depth (with the fitted power law), and the flatness
of minima against the geometry of the paths between them.

- `trend_figure`: a measure vs width (log x; one line per depth) or vs depth (one line per width), one panel per
  optimizer (× facet values), error bars = the cell's standard error (over endpoint pairs: the endpoint
  jackknife); along width the fitted exponent of `trends.trend_table` where the widths support one (dashed)
  and, for barriers, the w^-1/2 decay theory predicts (dotted).
- `flat_vs_path`: scatter of macroscopic measures (endpoint top eigenvalue, trace, worst/average sharpness) against
  microscopic ones (barrier, path curvature, sharpness along the path), one point per cell coloured by optimizer,
  with Kendall τ over all cells and within each optimizer (`flat_vs_path_tau`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from landscape_sweep.report import facets as fc
from landscape_sweep.report.correlation import kendall, kendall_test
from landscape_sweep.report.plots import (
    MAX_COLS,
    MAX_PANELS,
    Drawn,
    axis_labels,
    errorbars,
    facet_cols,
    facet_panels,
    facet_slots,
    fig_title,
    panel_grid,
    panel_title,
    save_png,
    unique_sorted,
)
from landscape_sweep.report.trends import theory_reference
from landscape_sweep.results import curve_methods

SE = "mean ± standard error over its endpoints (std/√n) or endpoint pairs (jackknife over endpoints)"
MACRO = {
    "hessian_top_eig": "top Hessian eigenvalue",
    "hessian_trace": "Hessian trace",
    "worst_case": "worst-case sharpness",
    "average_case": "average-case sharpness",
}


def has_values(table: pd.DataFrame, stem: str) -> bool:
    """Whether measure `stem` has a finite mean in some completed cell."""
    col = f"{stem}_mean"
    return col in table and bool(np.isfinite(table.loc[table["status"] == "completed", col].astype(float)).any())


def micro_measures(table: pd.DataFrame, methods: list[str]) -> dict[str, str]:
    """The path measures to set against flatness: the barrier of the best straight path (aligned if measured),
    the curvature of the first fitted curve, the largest sharpness along the first path that measured it."""
    out = {}
    straight = [m for m in ("linear_aligned", "linear") if m in methods and has_values(table, f"{m}/loss_barrier")]
    if straight:
        out[f"{straight[0]}/loss_barrier"] = f"loss barrier ({straight[0]})"
    curved = [m for m in methods if m in curve_methods() and has_values(table, f"{m}/path_curvature")]
    if curved:
        out[f"{curved[0]}/path_curvature"] = f"path curvature ({curved[0]}, rad)"
    along = [m for m in methods if has_values(table, f"{m}/max_hessian_top_eig_along_path")]
    if along:
        out[f"{along[0]}/max_hessian_top_eig_along_path"] = f"max top eigenvalue along path ({along[0]})"
    return out


def trend_figure(
    view: fc.View, measure: str, label: str, axis: str, path: Path, fits: pd.DataFrame | None = None
) -> Drawn | None:
    """`measure` vs `axis` ('width' or 'depth'); None when fewer than 2 axis values have a value."""
    done = view.cols(measure, done=True)
    if f"{measure}_mean" not in done:
        return None
    done = done[np.isfinite(done[f"{measure}_mean"].astype(float))]
    if len(done) == 0 or done[axis].nunique() < 2:
        return None
    other = "depth" if axis == "width" else "width"
    split = view.split
    panels = facet_panels(done, split)[:MAX_PANELS]
    keys = unique_sorted(done[other])
    cmap = mpl.colormaps["viridis"]
    colors = {k: cmap(i / max(1, len(keys) - 1) * 0.9) for i, k in enumerate(keys)}
    ncols = facet_cols(done)
    fig, axes = panel_grid(len(panels), ncols, 3.0, 2.3, right=1.5, share=True, slots=facet_slots(panels, ncols))
    theory = measure.endswith("loss_barrier") and axis == "width"
    fit_keys = ["optimizer", other, *split]
    fit_of = _fits_by_line(fits, fit_keys)
    for ax, (combo, opt, sub) in zip(axes, panels):
        anchored = False
        for k in keys:
            cols = [axis, *(c for c in (f"{measure}_mean", f"{measure}_se") if c in sub)]
            g = sub.loc[sub[other] == k, cols].groupby(axis, as_index=False).mean().sort_values(axis)
            if g.empty:
                continue
            x, y = g[axis].to_numpy(float), g[f"{measure}_mean"].to_numpy(float)
            e = g[f"{measure}_se"].to_numpy(float) if f"{measure}_se" in g else np.zeros_like(y)
            errorbars(ax, x, y, e, colors[k])
            fit = fit_of.get(_key({**combo, "optimizer": opt, other: k}, fit_keys))
            if fit is not None and len(x) > 1:
                xs = np.geomspace(x.min(), x.max(), 60)
                ax.plot(xs, fit["a"] * xs ** (-fit["b"]) + fit["c"], color=colors[k], ls="--", lw=0.9)
            if theory and not anchored and np.isfinite(y[0]):
                xs = np.geomspace(x.min(), x.max(), 60)
                ax.plot(xs, theory_reference(xs, y[0]), color="grey", ls=":", lw=1.2)
                anchored = True
        if axis == "width":
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: fc.value_label(float(v))))
            ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())  # minor log ticks cost ~0.1 s an axes
        else:  # depth: whole layers only
            ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        panel_title(ax, f"{opt}" + (f"\n{fc.label(combo, split)}" if split else ""))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axis_labels(axes, axis, label)
    handles = [Line2D([], [], color=colors[k], marker="o", ms=3, label=f"{other} {fc.value_label(k)}") for k in keys]
    if fit_of:
        handles.append(Line2D([], [], color="black", ls="--", lw=0.9, label="fit a·w^-b (+ c)"))
    if theory:
        handles.append(Line2D([], [], color="grey", ls=":", lw=1.2, label="∝ w^-1/2 (theory)"))
    fig.legend(handles=handles, loc="center right", fontsize=7.5, frameon=False)
    fig_title(fig, f"{label} vs {axis} (mean ± standard error of each cell; one y scale for every panel)")
    text = fc.caption(split, view.pooled, SE)
    if fit_of:
        text += " Dashed: the fitted power law of each line where the widths support one (4+ widths; table below)."
    if theory:
        text += " Dotted: a w^-1/2 decay anchored at the first line's narrowest cell, for reference."
    if len(facet_panels(done, split)) > MAX_PANELS:
        text += f" Only the first {MAX_PANELS} panels are shown: narrow the cells with report.select."
    return Drawn([save_png(fig, path)], text)


def _key(values: dict, keys: list[str]) -> tuple:
    """A hashable group key: each value as a float when it is a number (2 and 2.0 match), else as a string."""

    def norm(v: Any) -> Any:
        try:
            return float(v)
        except (TypeError, ValueError):
            return str(v)

    return tuple(norm(values.get(k)) for k in keys)


def _fits_by_line(fits: pd.DataFrame | None, keys: list[str]) -> dict[tuple, pd.Series]:
    """The converged fits keyed by `_key` over `keys` (groups differing in other keys are not one line: left out)."""
    if fits is None or fits.empty:
        return {}
    out: dict[tuple, list] = {}
    for _, row in fits[fits["converged"].astype(bool)].iterrows():
        out.setdefault(_key(row.to_dict(), keys), []).append(row)
    return {k: rows[0] for k, rows in out.items() if len(rows) == 1}


def flat_vs_path_tau(table: pd.DataFrame, micro: dict[str, str]) -> pd.DataFrame:
    """Kendall τ of every (macroscopic, microscopic) pair over the completed cells: all cells (with its two-sided
    p-value, `correlation.tau_pvalue`), and within each optimizer (`tau[<opt>]`, `n[<opt>]`), so a
    flatness-seeking optimizer's effect on both shows separately."""
    done = table[table["status"] == "completed"]
    opts = unique_sorted(done["optimizer"]) if "optimizer" in done else []
    rows = []
    for ma in [m for m in MACRO if has_values(table, m)]:
        for mi in micro:
            x, y = done[f"{ma}_mean"].astype(float), done[f"{mi}_mean"].astype(float)
            tau, n, p = kendall_test(x, y)
            row = {"macro": ma, "micro": mi, "n": n, "tau": tau, "p": p}
            for o in opts:
                sel = done["optimizer"] == o
                row[f"tau[{o}]"], row[f"n[{o}]"] = kendall(x[sel], y[sel])
            rows.append(row)
    return pd.DataFrame(rows)


def flat_vs_path(table: pd.DataFrame, micro: dict[str, str], path: Path) -> Drawn | None:
    """Scatter grid: rows = microscopic measures, columns = macroscopic ones; τ (all cells, n) in each panel."""
    macro = {k: v for k, v in MACRO.items() if has_values(table, k)}
    done = table[table["status"] == "completed"]
    if not macro or not micro or len(done) < 2:
        return None
    opts = unique_sorted(done["optimizer"])
    colors = {o: mpl.colormaps["tab10"](i % 10) for i, o in enumerate(opts)}
    pairs = [(mi, ma) for mi in micro for ma in macro]
    fig, axes = panel_grid(len(pairs), min(MAX_COLS, len(macro)), 2.9, 2.5, right=1.4)
    for ax, (mi, ma) in zip(axes, pairs):
        x, y = done[f"{ma}_mean"].astype(float), done[f"{mi}_mean"].astype(float)
        for o in opts:
            sel = done["optimizer"] == o
            ax.scatter(x[sel], y[sel], s=14, color=colors[o], alpha=0.75, lw=0)
        for a, v in (("x", x), ("y", y)):
            v = v[np.isfinite(v)]
            if len(v) and (v > 0).all() and v.max() / v.min() > 20:
                getattr(ax, f"set_{a}scale")("log")
        tau, n = kendall(x, y)
        panel_title(ax, f"Kendall τ = {tau:+.2f} (n={n})" if math.isfinite(tau) else f"τ n/a (n={n})", 8)
        ax.set_xlabel(macro[ma], fontsize=8)
        ax.set_ylabel(micro[mi], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colors[o], marker="o", ls="", label=str(o)) for o in opts]
    fig.legend(handles=handles, loc="center right", fontsize=7.5, frameon=False)
    fig_title(fig, "Flat minima vs path geometry (one point per cell: means over endpoints / pairs)")
    text = (
        "Each point: one completed cell (x: mean over its endpoints; y: mean over its endpoint pairs), coloured by "
        "optimizer; τ: Kendall τ_b over all cells in the panel (per optimizer in the table below)."
    )
    return Drawn([save_png(fig, path)], text)

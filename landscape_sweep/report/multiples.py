"""Fast small multiples: many line panels drawn into one matplotlib Axes, and pages of them.

A grid of ordinary Axes costs ~50 ms a panel (each Axes builds and lays out its own ticks), which is minutes for
a 1,200-cell sweep. Here a page is one Axes: each panel is a frame at its slot, its lines are offset into it and
drawn as one LineCollection per style, and the tick labels are plain text on the outer panels — 5-7x faster.
Every panel of a page shares the page's x and y ranges (stated on the outer panels), so panels compare directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

MAX_PANELS = 30  # per page
MAX_COLS = 4  # per row
PANEL_W, PANEL_H = 2.3, 1.5  # inches
GAP_X, GAP_Y = 0.18, 0.42  # between panels, in panel units
T = TypeVar("T")


@dataclass
class Panel:
    """One small multiple: a title, lines (x, y, style key) and, instead of lines, a note (e.g. `failed`)."""

    title: str
    lines: list[tuple[np.ndarray, np.ndarray, Any]] = field(default_factory=list)
    note: str = ""
    new_row: bool = False  # start a new row of the page with this panel (e.g. a new depth)


def paginate(panels: Sequence[T], max_panels: int = MAX_PANELS, max_cols: int = MAX_COLS) -> list[list[T]]:
    """Split panels into pages of at most `max_panels` — the report's one pagination. A panel with a true `new_row`
    attribute starts a row group, and a page breaks only at a row start when the group (panels up to the next
    `new_row`) fits on a page, so a group is not split across pages unless it alone is too big; panels without
    the attribute (heatmap facets, surface tiles) are one group: plain chunks of `max_panels`."""
    if max_panels < 1:
        raise ValueError(f"max_panels: got {max_panels!r}; need an integer >= 1")
    groups: list[list[T]] = []
    for p in panels:
        if getattr(p, "new_row", False) or not groups:
            groups.append([])
        groups[-1].append(p)
    pages: list[list[T]] = [[]]
    for g in groups:
        chunks = [g[i : i + max_panels] for i in range(0, len(g), max_panels)]
        for chunk in chunks:
            if pages[-1] and len(pages[-1]) + len(chunk) > max_panels:
                pages.append([])
            pages[-1].extend(chunk)
    return [p for p in pages if p]


def page_paths(path: Path, count: int, *, number_one: bool = True) -> list[Path]:
    """The files of `count` pages of the figure `path`: `<stem>_p<k><suffix>` (k from 1), or `path` itself for a
    single page when not `number_one` — the names `report.figures` matches as figure files."""
    if count == 1 and not number_one:
        return [path]
    return [path.with_name(f"{path.stem}_p{k}{path.suffix}") for k in range(1, count + 1)]


def layout(panels: Sequence[Panel], max_cols: int = MAX_COLS) -> list[tuple[int, int]]:
    """(row, col) of each panel: rows wrap at `max_cols`; `new_row` panels start a row."""
    out, r, c = [], -1, max_cols
    for p in panels:
        if p.new_row or c >= max_cols or r < 0:
            r, c = r + 1, 0
        out.append((r, c))
        c += 1
    return out


def _nice_ticks(lo: float, hi: float, n: int = 3) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    step = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(step))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step), default=step)
    first = math.ceil(lo / step) * step
    return [v for v in np.arange(first, hi + step * 1e-9, step)][: n + 2]


def y_range(panels: Iterable[Panel], clip_quantile: float = 0.98) -> tuple[float, float]:
    """Shared y range of the page: from the lowest value to the `clip_quantile` of the panels' maxima (one
    exploding path does not flatten every other panel; clipped lines leave the frame, which says so)."""
    lows, highs = [], []
    for p in panels:
        for _, y, _ in p.lines:
            y = y[np.isfinite(y)]
            if len(y):
                lows.append(y.min())
                highs.append(y.max())
    if not lows:
        return 0.0, 1.0
    lo, hi = float(min(lows)), float(np.quantile(highs, clip_quantile))
    pad = 0.05 * (hi - lo or abs(hi) or 1.0)
    return lo - pad, hi + pad


def draw_page(
    panels: Sequence[Panel],
    styles: dict[Any, dict[str, Any]],
    *,
    title: str,
    x_range: tuple[float, float],
    x_label: str,
    y_label: str,
    legend: list[Line2D],
    max_cols: int = MAX_COLS,
) -> Figure:
    """One page: panels at their `layout` slots in a single Axes, shared ranges, tick labels on outer panels."""
    slots = layout(panels, max_cols)
    rows = max(r for r, _ in slots) + 1
    cols = max(c for _, c in slots) + 1
    (x0, x1), (y0, y1) = x_range, y_range(panels)
    fig = Figure(figsize=(PANEL_W * cols * (1 + GAP_X) + 2.4, PANEL_H * rows * (1 + GAP_Y) + 0.7))
    ax = fig.add_axes((0.9 / fig.get_figwidth(), 0.45 / fig.get_figheight(), 1 - 2.8 / fig.get_figwidth(),
                       1 - 1.05 / fig.get_figheight()))  # fmt: skip
    ax.set_axis_off()
    segs: dict[Any, list[np.ndarray]] = {}
    frames, grid = [], []
    xt, yt = _nice_ticks(x0, x1, 2), _nice_ticks(y0, y1, 3)
    last_row = {c: max(r for r, cc in slots if cc == c) for _, c in slots}
    for p, (r, c) in zip(panels, slots):
        ox, oy = c * (1 + GAP_X), (rows - 1 - r) * (1 + GAP_Y)
        frames.append([(ox, oy), (ox + 1, oy), (ox + 1, oy + 1), (ox, oy + 1), (ox, oy)])
        grid += [[(ox, oy + (v - y0) / (y1 - y0)), (ox + 1, oy + (v - y0) / (y1 - y0))] for v in yt]
        ax.text(ox + 0.5, oy + 1.04, p.title, ha="center", va="bottom", fontsize=7.5)
        if p.note:
            ax.text(ox + 0.5, oy + 0.5, p.note, ha="center", va="center", fontsize=8, color="#a00000")
        for x, y, key in p.lines:
            xs = ox + (np.asarray(x, float) - x0) / (x1 - x0)
            ys = oy + np.clip((np.asarray(y, float) - y0) / (y1 - y0), -0.02, 1.02)
            segs.setdefault(key, []).append(np.column_stack([xs, ys]))
        if c == 0:
            for v in yt:
                ax.text(ox - 0.03, oy + (v - y0) / (y1 - y0), f"{v:.3g}", ha="right", va="center", fontsize=6.5)
        if r == last_row[c]:
            for v in xt:
                ax.text(ox + (v - x0) / (x1 - x0), oy - 0.04, f"{v:.3g}", ha="center", va="top", fontsize=6.5)
            ax.text(ox + 0.5, oy - 0.2, x_label, ha="center", va="top", fontsize=7.5)
    ax.add_collection(LineCollection(grid, colors="#dddddd", lw=0.5))
    for key, s in segs.items():
        ax.add_collection(LineCollection(s, **styles[key]))
    ax.add_collection(LineCollection(frames, colors="#555555", lw=0.6))
    ax.text(-0.32, (rows * (1 + GAP_Y) - GAP_Y) / 2, y_label, rotation=90, ha="center", va="center", fontsize=8)
    ax.set_xlim(-0.35, cols * (1 + GAP_X) - GAP_X + 0.02)
    ax.set_ylim(-0.35, rows * (1 + GAP_Y) - GAP_Y + 0.25)
    fig.legend(handles=legend, loc="center right", fontsize=7.5, frameon=False)
    fig.suptitle(title, fontsize=9.5)
    return fig

"""Contour figures of the loss surfaces stored by `landscape.surface.enabled` (`landscape=thorough`).

- `cell_surfaces`: one figure per cell, one panel per endpoint's `loss_surface` (Li et al. 2018: two random
  filter-normalised directions, the endpoint at the origin) and per fitted curve's `plane_surface` (Garipov et al.
  2018: the plane through both endpoints and the first bend, with the curve drawn when it lies in the plane).
- `surfaces_grid`: the sweep's small multiples, one panel per completed cell, pages per optimizer × depth.

Filled contours on log-spaced levels (the basin stays visible beside the walls), one colour scale per figure or
page. They are drawn as a level-banded image (bilinear in the loss, like `contourf`'s level lines), and a grid page
is one Axes holding every panel with its numbers in the titles: 30 Axes with ticks cost seconds a page. Stored grids
are `loss[i][j]` at `(x[i], y[j])` on uniform x and y (landscape/surface.py). Endpoint surfaces are evaluated on
the probe subset of the training split (`landscape.analysis_size`), planes on the whole training split.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib import patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox, TransformedBbox

from landscape_sweep.report.facets import value_label
from landscape_sweep.report.multiples import page_paths, paginate
from landscape_sweep.report.plots import save_png
from landscape_sweep.results import CellResult, PathEntry

MAX_COLS = 4
MIN_WIDTH = 6.5  # inches: room for the title, legend and note beside one or two panels
NUM_LEVELS = 21  # level boundaries: 20 colour bands
CMAP = mpl.colormaps["viridis"].resampled(NUM_LEVELS - 1).with_extremes(bad="#d0d0d0")
MARKERS = {"endpoint": {"marker": "o", "ms": 6}, "bend": {"marker": "D", "ms": 5}}
_OUTLINE = [patheffects.withStroke(linewidth=2.6, foreground="black")]
_BREAK = np.full((1, 2), np.nan)  # between two panels' lines drawn as one artist
PLANE_NOTE = "Plane axes: Euclidean distance in weight space, x and y drawn at different scales."
GRID_NOTE = (
    "Endpoint panels: two random filter-normalised directions (span in the title), the endpoint at the centre.\n"
    "Plane panels (Bezier/PolyChain i–j): the plane through both endpoints and the curve's first bend, x along "
    "θj − θi (their distance in the title), y towards the bend; x and y not to scale."
)


@dataclass
class Panel:
    """One surface: its grid (`loss[y, x]`), labels, and the models, curve and straight path in its coordinates."""

    title: str
    tag: str  # the title on a grid page, with the panel's size (grid pages have no ticks)
    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    axis_labels: tuple[str, str]
    points: list[tuple[str, float, float]] = field(default_factory=list)  # (legend kind, x, y)
    curve: np.ndarray | None = None  # (P, 2)
    segment: np.ndarray | None = None  # (2, 2)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """The image's box: the grid plus half a step on each side (grid points are pixel centres; the half steps
        are clipped off)."""
        dx, dy = (self.x[-1] - self.x[0]) / (len(self.x) - 1), (self.y[-1] - self.y[0]) / (len(self.y) - 1)
        return self.x[0] - dx / 2, self.x[-1] + dx / 2, self.y[0] - dy / 2, self.y[-1] + dy / 2


def _grid(surface: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(x, y, loss[y, x]) of a stored surface, or None when absent, malformed, not uniform or without a finite loss."""
    if not isinstance(surface, dict):
        return None
    try:
        x, y = np.asarray(surface["x"], float), np.asarray(surface["y"], float)
        loss = np.asarray(surface["loss"], float).T  # stored loss[i][j] at (x[i], y[j])
    except (KeyError, TypeError, ValueError):
        return None
    uniform = all(
        v.ndim == 1 and len(v) >= 2 and np.allclose(np.diff(v), (v[-1] - v[0]) / (len(v) - 1)) for v in (x, y)
    )
    if not uniform or x[-1] <= x[0] or y[-1] <= y[0] or loss.shape != (len(y), len(x)) or not np.isfinite(loss).any():
        return None
    return x, y, loss


def endpoint_panel(result: CellResult, k: int) -> Panel | None:
    """The surface around endpoint k (the model at the origin), or None without one."""
    e = result.endpoints[k]
    if (g := _grid(e.loss_surface)) is None:
        return None
    labels = ("direction 1 (filter-normalised)", "direction 2 (filter-normalised)")
    tag = f"endpoint {k} (seed {e.seed}), span ±{max(abs(g[0][0]), abs(g[0][-1])):.3g}"
    return Panel(f"around endpoint {k} (seed {e.seed})", tag, *g, labels, points=[("endpoint", 0.0, 0.0)])


def _num_bends(result: CellResult) -> Any:
    curve = result.config.get("landscape", {}).get("connectivity", {}).get("curve", {})
    return curve.get("num_bends") if isinstance(curve, dict) else None


def plane_panel(result: CellResult, entry: PathEntry) -> Panel | None:
    """The plane of a fitted curve: endpoints at (0, 0) and (|θj − θi|, 0), the first bend above them, and the
    curve when it lies in the plane (one bend: a quadratic Bezier, or PolyChain's two segments); None without one."""
    g = _grid(entry.plane_surface)
    xy = np.asarray(entry.plane_surface.get("models_xy", []), float) if g is not None else np.empty(0)
    if g is None or xy.shape != (3, 2):
        return None
    a, b, bend = xy
    i, j = entry.pair
    curve = None
    if _num_bends(result) == 1 and entry.method == "bezier":
        t = np.linspace(0.0, 1.0, 101)[:, None]
        curve = (1 - t) ** 2 * a + 2 * t * (1 - t) * bend + t**2 * b
    elif _num_bends(result) == 1 and entry.method == "polychain":
        curve = np.stack([a, bend, b])
    labels = (f"along θ{j} − θ{i}", "towards the bend")
    points = [("endpoint", *a), ("endpoint", *b), ("bend", *bend)]
    tag = f"{entry.method} {i}–{j}, |θ{j}−θ{i}| = {np.linalg.norm(b - a):.3g}"
    return Panel(f"{entry.method} plane, pair {i}–{j}", tag, *g, labels, points, curve, np.stack([a, b]))


def cell_panels(result: CellResult) -> list[Panel]:
    """Every surface of a cell: the endpoints' first, then the planes in connectivity order."""
    panels = [endpoint_panel(result, k) for k in range(len(result.endpoints))]
    panels += [plane_panel(result, p) for p in result.connectivity if p.plane_surface is not None]
    return [p for p in panels if p is not None]


def grid_panel(result: CellResult) -> Panel | None:
    """A cell's panel of the sweep grid: its first pair's plane (it shows the path), else its first endpoint's."""
    planes = [p for p in result.connectivity if p.plane_surface is not None]
    first = min((tuple(p.pair) for p in planes), default=None)
    for p in (p for p in planes if tuple(p.pair) == first):
        if (panel := plane_panel(result, p)) is not None:
            return panel
    return next(filter(None, (endpoint_panel(result, k) for k in range(len(result.endpoints)))), None)


def layout(n: int, max_cols: int = MAX_COLS) -> tuple[int, int]:
    """(rows, columns) of `n` panels, at most `max_cols` per row."""
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def _levels(panels: list[Panel]) -> tuple[np.ndarray, str]:
    """The level boundaries shared by the panels: log-spaced from their lowest to highest loss (linear when a loss
    is <= 0), and the colour bar label saying which."""
    values = np.concatenate([p.loss[np.isfinite(p.loss)] for p in panels])
    lo, hi = float(values.min()), float(values.max())
    if lo > 0:
        return np.geomspace(lo, max(hi, lo * 1.01), NUM_LEVELS), "train loss (log scale)"
    return np.linspace(lo, hi if hi > lo else lo + 1.0, NUM_LEVELS), "train loss"


def _to(p: Any, grid: tuple, box: tuple) -> np.ndarray:
    """Points (..., 2) in a panel's coordinates mapped into `box`, its grid's range (x0, x1, y0, y1) onto the box's."""
    scale = np.subtract(box[1::2], box[::2]) / np.subtract(grid[1::2], grid[::2])
    return np.asarray(box[::2]) + (np.asarray(p, float) - grid[::2]) * scale


def _draw(ax: Any, tiles: list[tuple[Panel, tuple[float, float, float, float] | None]], levels: np.ndarray) -> None:
    """Each panel's banded surface with its grid's range drawn into its box (x0, x1, y0, y1 in `ax` coordinates;
    None: the panel's own, in an Axes of its own), then the straight paths (dashed), curves and models' markers of
    all of them, one artist per kind (a page's hundreds of small artists cost most of its build time)."""
    marks: dict[str, list[np.ndarray]] = {"segment": [], "curve": [], **{k: [] for k in MARKERS}}
    for panel, box in tiles:
        grid = (panel.x[0], panel.x[-1], panel.y[0], panel.y[-1])
        if box is None:  # an Axes of its own: show exactly the grid
            box = grid
            ax.set(xlim=grid[:2], ylim=grid[2:])
        (x0, y0), (x1, y1) = _to(panel.extent[::2], grid, box), _to(panel.extent[1::2], grid, box)
        im = ax.imshow(np.ma.masked_invalid(panel.loss), extent=(x0, x1, y0, y1), origin="lower", cmap=CMAP,
                       norm=BoundaryNorm(levels, CMAP.N), interpolation="bilinear", interpolation_stage="data",
                       aspect="auto")  # fmt: skip
        im.set_clip_box(TransformedBbox(Bbox.from_extents(box[0], box[2], box[1], box[3]), ax.transData))
        for kind, line in (("segment", panel.segment), ("curve", panel.curve)):
            if line is not None:
                marks[kind] += [_to(line, grid, box), _BREAK]
        for kind, *xy in panel.points:
            marks[kind].append(_to([xy], grid, box))
    for kind, style in (("segment", {"lw": 1.0, "ls": "--"}), ("curve", {"lw": 1.6})):
        if marks[kind]:
            ax.plot(*np.concatenate(marks[kind]).T, color="white", path_effects=_OUTLINE, **style)
    for kind, style in MARKERS.items():
        if marks[kind]:
            ax.plot(*np.concatenate(marks[kind]).T, **style, ls="", mec="black", mew=0.9, color="white", zorder=5)


def _canvas(rows: int, cols: int, cell: tuple[float, float], gap: tuple[float, float], left: float, note: str):
    """A figure for a grid of `cell`-sized slots (inches) with room for the suptitle and legend above, the colour
    bar right and the note (wrapped to the width) below, at least `MIN_WIDTH` wide (the grid then centred).
    Returns the figure, `corner(row, col)` -> (x, y) of a slot's lower left, the wrapped note and the colour bar's
    box (x, y, width, height), all in inches."""
    right, top = 1.25, 0.8
    gw, gh = cols * cell[0] + (cols - 1) * gap[0], rows * cell[1] + (rows - 1) * gap[1]
    w = max(left + gw + right, MIN_WIDTH)
    note = "\n".join(textwrap.fill(line, int((w - 0.4) / 0.052)) for line in note.splitlines())
    bottom = 0.45 + 0.13 * len(note.splitlines())
    h = top + gh + bottom
    x0 = left + (w - left - right - gw) / 2
    fig = Figure(figsize=(w, h))

    def corner(r: int, c: int) -> tuple[float, float]:
        return x0 + c * (cell[0] + gap[0]), h - top - cell[1] - r * (cell[1] + gap[1])

    ch = min(gh, 5.0)  # colour bar: beside the first rows of a long page
    return fig, corner, note, (x0 + gw + 0.3, bottom + gh - ch, 0.14, ch)


def _decorate(
    fig: Figure, panels: list[Panel], levels: np.ndarray, label: str, title: str, note: str, box: tuple
) -> None:
    """Colour bar (at `box`, inches), suptitle, legend of the marks drawn, note below."""
    w, h = fig.get_size_inches()
    x, y, cw, ch = box
    cbar = fig.colorbar(
        ScalarMappable(BoundaryNorm(levels, CMAP.N), CMAP), cax=fig.add_axes((x / w, y / h, cw / w, ch / h))
    )
    cbar.set_label(label, fontsize=8)
    ticks = levels[:: max(1, len(levels) // 5)]
    cbar.set_ticks(ticks, labels=[f"{v:.3g}" for v in ticks], fontsize=7)
    cbar.ax.yaxis.set_minor_locator(mpl.ticker.NullLocator())
    kinds = dict.fromkeys(k for p in panels for k, *_ in p.points)
    handles = [Line2D([], [], ls="", mec="black", color="white", label=k, **MARKERS[k]) for k in kinds]
    if any(p.curve is not None for p in panels):
        handles.append(Line2D([], [], color="black", lw=1.6, label="fitted curve"))
    if any(p.segment is not None for p in panels):
        handles.append(Line2D([], [], color="black", lw=1.0, ls="--", label="straight path"))
    fig.suptitle(title, fontsize=10, y=1 - 0.1 / h, va="top")
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.38 / h), ncol=len(handles),
               fontsize=7, frameon=False, handletextpad=0.3, columnspacing=1.2)  # fmt: skip
    if note:
        fig.text(0.2 / w, 0.1 / h, note, fontsize=7, color="#444444", va="bottom")


def cell_figure(panels: list[Panel], title: str) -> Figure:
    """One Axes per panel (ticks and axis labels), at most `MAX_COLS` a row, one colour scale, one legend."""
    rows, cols = layout(len(panels))
    aw, ah = 2.3, 1.9
    note = PLANE_NOTE if any(p.segment is not None for p in panels) else ""
    fig, corner, note, box = _canvas(rows, cols, (aw, ah), (0.75, 0.75), 0.6, note)
    w, h = fig.get_size_inches()
    levels, label = _levels(panels)
    for k, panel in enumerate(panels):
        x, y = corner(*divmod(k, cols))
        ax = fig.add_axes((x / w, y / h, aw / w, ah / h))
        _draw(ax, [(panel, None)], levels)
        ax.set_title(panel.title, fontsize=8, pad=3)
        ax.set_xlabel(panel.axis_labels[0], fontsize=7, labelpad=1)
        ax.set_ylabel(panel.axis_labels[1], fontsize=7, labelpad=1)
        ax.tick_params(labelsize=7, length=2, pad=1.5)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(4))
        ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(4))
    _decorate(fig, panels, levels, label, title, note, box)
    return fig


def page_figure(panels: list[Panel], title: str) -> Figure:
    """A grid page: every panel a tile of one Axes, at most `MAX_COLS` a row, its numbers in its title."""
    rows, cols = layout(len(panels))
    pw, ph, th = 2.0, 1.55, 0.36  # tile and title height, inches
    fig, corner, note, box = _canvas(rows, cols, (pw, ph + th), (0.25, 0.2), 0.2, GRID_NOTE)
    w, h = fig.get_size_inches()
    ax = fig.add_axes((0, 0, 1, 1), xlim=(0, w), ylim=(0, h))  # coordinates in inches
    ax.set_axis_off()
    levels, label = _levels(panels)
    corners = [corner(*divmod(k, cols)) for k in range(len(panels))]
    _draw(ax, [(p, (x, x + pw, y, y + ph)) for p, (x, y) in zip(panels, corners)], levels)
    for panel, (x, y) in zip(panels, corners):
        ax.text(x + pw / 2, y + ph + 0.04, panel.tag, ha="center", va="bottom", fontsize=7)
    _decorate(fig, panels, levels, label, title, note, box)
    return fig


def _cell_name(result: CellResult) -> str:
    c = result.cell
    name = f"{c.get('optimizer')}, depth {value_label(c.get('depth'))}, width {value_label(c.get('width'))}"
    return f"{result.job}: {name}" if result.job else name


def cell_surfaces(result: CellResult, path: Path) -> Path | None:
    """One figure of every loss surface of a cell (see the module docstring), or None when it has none."""
    panels = cell_panels(result)
    if not panels:
        return None
    return save_png(cell_figure(panels, f"Loss surfaces of {_cell_name(result)}"), Path(path))


def grid_pages(results: list[CellResult], max_panels: int = 30) -> list[tuple[str, str, list[Panel]]]:
    """(file group, description, panels) of every page: completed cells with a surface, grouped by optimizer × depth
    (widths ascending, then job order), at most `max_panels` a page; group `cells` for cells without those fields."""
    paginate([], max_panels)  # a bad max_panels fails here, even for a sweep without surfaces
    groups: dict[tuple, list[tuple[Any, Panel]]] = {}
    for r in results:
        if r.status != "completed" or (panel := grid_panel(r)) is None:
            continue
        c, width = r.cell, r.cell.get("width")
        key = (c["optimizer"], c["depth"]) if c.get("optimizer") is not None and c.get("depth") is not None else ()
        head = " · ".join(s for s in ("" if width is None else f"w={value_label(width)}", r.job or "") if s)
        panel.tag = f"{head}\n{panel.tag}" if head else panel.tag
        groups.setdefault(key, []).append((width, panel))

    def order(v: Any) -> tuple:  # numbers ascending, then anything else
        return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))

    pages = []
    for key in sorted(groups, key=lambda k: (0, str(k[0]), order(k[1])) if k else (1, "", order(0))):
        cells = sorted(groups[key], key=lambda wp: order(wp[0]))  # stable: job order within a width
        name = re.sub(r"[^A-Za-z0-9_.=-]+", "-", f"{key[0]}_d{value_label(key[1])}") if key else "cells"
        what = f"{key[0]}, depth {value_label(key[1])}" if key else "cells without optimizer/depth"
        pages += [(name, what, page) for page in paginate([p for _, p in cells], max_panels)]
    return pages


def surfaces_grid(results: list[CellResult], figdir: Path, max_panels: int = 30) -> list[Path]:
    """The sweep's surfaces, `surfaces_grid_<group>_p<k>.png` under `figdir` (see `grid_pages`); [] when none."""
    pages, paths, count = grid_pages(results, max_panels), [], {}
    totals = {g: sum(1 for name, *_ in pages if name == g) for g, *_ in pages}
    for group, what, panels in pages:
        k = count[group] = count.get(group, 0) + 1
        fig = page_figure(panels, f"Loss surfaces: {what} (page {k}/{totals[group]}), one panel per cell")
        paths.append(save_png(fig, page_paths(Path(figdir) / f"surfaces_grid_{group}.png", totals[group])[k - 1]))
    return paths

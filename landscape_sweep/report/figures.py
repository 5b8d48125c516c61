"""The report's figures: one registry entry per kind of figure, what draws it and which files it writes.

`FIGURES` lists every kind in report order. An entry's `jobs` turns the report's inputs into `{name: draw}` (one
job per file or page set; `draw()` returns a `plots.Drawn` or None when there is nothing to draw), its `files`
says which names under `figures/` it writes (a regex before `_p<k>` and the extension), so that a rebuilt report
removes exactly its own stale files, and `heavy` kinds are handed to the workers first. Pages follow one rule
(`multiples.paginate`, `multiples.page_paths`). Adding a figure is one entry here plus its drawing function.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from landscape_sweep.report import facets as fc
from landscape_sweep.report.block_plots import block_figure
from landscape_sweep.report.instability import instability_figure
from landscape_sweep.report.plots import Drawn, barrier_vs_params, curves_pages, heatmap
from landscape_sweep.report.surfaces import surfaces_grid
from landscape_sweep.report.trend_plots import flat_vs_path, trend_figure
from landscape_sweep.results import BLOCK_MEASURES, CellResult

# heatmap file stem -> (table column stem, colorbar label); one heatmap per path method is added
HEATMAPS = {
    "hessian_top_eig": ("hessian_top_eig", "top Hessian eigenvalue"),
    "test_acc": ("test_acc", "test accuracy"),
    "gen_gap": ("gen_gap", "generalization gap (train acc − test acc)"),
}
NOT_DRAWN = ("/max_train_loss",)  # trend measures with no figure of their own (suffixes)
Jobs = dict[str, Callable[[], Any]]


@dataclass
class FigureInputs:
    """What the figures draw from: the cells, their view (facets, selection), the compared cells (trend figures
    and flat-vs-path: without the cells that never reached `trainer.stop_at`), the analyses, the output dir."""

    results: list[CellResult]
    view: fc.View
    compared: fc.View
    methods: list[str]
    trends: pd.DataFrame
    measures: dict[str, str]  # trend measure -> label
    micro: dict[str, str]  # flat-vs-path measures
    figdir: Path


@dataclass(frozen=True)
class FigureKind:
    """One kind of figure: its jobs, the file names it writes (regex), whether it is drawn first."""

    name: str
    jobs: Callable[[FigureInputs], Jobs]
    files: str
    heavy: bool = False

    @classmethod
    def single(
        cls, name: str, draw: Callable[[FigureInputs, Path], Any], files: str | None = None, heavy: bool = False
    ) -> FigureKind:
        """A kind of one job, `name`, drawn by `draw(inputs, figdir / "<name>.png")` (pages: `<name>_p<k>.png`)."""
        return cls(name, lambda f: {name: lambda: draw(f, f.figdir / f"{name}.png")}, files or name, heavy)


def heatmap_jobs(f: FigureInputs) -> Jobs:
    """A depth × width heatmap per path method's loss barrier, then each of `HEATMAPS`."""
    specs = {f"loss_barrier_{m}": (f"{m}/loss_barrier", f"train loss barrier ({m})") for m in f.methods} | HEATMAPS
    return {
        f"heatmap_{name}": lambda c=column, lab=label, n=name: heatmap(f.view, c, lab, f.figdir / f"heatmap_{n}.png")
        for name, (column, label) in specs.items()
    }


def trend_jobs(f: FigureInputs) -> Jobs:
    """Each trend measure (but `NOT_DRAWN`) along width and depth, with its fits; the compared cells."""
    jobs: Jobs = {}
    tr = f.trends
    for m, label in ((m, lab) for m, lab in f.measures.items() if not m.endswith(NOT_DRAWN)):
        stem = m.replace("/", "_")
        for axis in ("width", "depth"):
            fits = tr[(tr["measure"] == m) & (tr["axis"] == axis)] if not tr.empty else None
            jobs[f"trend_{axis}_{stem}"] = lambda m=m, lab=label, a=axis, fi=fits, s=stem: trend_figure(
                f.compared, m, lab, a, f.figdir / f"trend_{a}_{s}.png", fi
            )
    return jobs


def blocks_jobs(f: FigureInputs) -> Jobs:
    """Where sharpness concentrates (`landscape.sharpness.per_block`): one figure per block measure."""
    return {f"blocks_{m}": lambda m=m: block_figure(f.view, m, f.figdir / f"blocks_{m}.png") for m in BLOCK_MEASURES}


def surfaces_figure(results: list[CellResult], view: fc.View, figdir: Path) -> Drawn | None:
    """The sweep's grid of loss-surface contours (`report.surfaces`), pages per optimizer × depth."""
    jobs = set(view.table["job"])
    paths = surfaces_grid([r for r in results if r.job in jobs], figdir)
    caption = (
        "One panel per completed cell (its title names the job: cells are never averaged): the loss on the plane "
        "through its first endpoint pair and the curve's bend (endpoints ○, bend ◇, straight path dashed, curve "
        "solid), or the 2-D surface around its first endpoint; one log-spaced colour scale a page. Every surface "
        "of a cell: `<job>/surfaces.png`."
    )
    return Drawn(paths, caption) if paths else None


# every kind of figure, in report order
FIGURES: list[FigureKind] = [
    FigureKind("heatmap", heatmap_jobs, r"heatmap_.+"),
    FigureKind.single("barrier_vs_params", lambda f, path: barrier_vs_params(f.view, f.methods, path)),
    FigureKind("trend", trend_jobs, r"trend_(width|depth)_.+", heavy=True),
    FigureKind.single("flat_vs_path", lambda f, path: flat_vs_path(f.compared.table, f.micro, path)),
    FigureKind("blocks", blocks_jobs, r"blocks_.+"),
    FigureKind.single("instability", lambda f, path: instability_figure(f.view, path)),  # spawn cells only
    FigureKind.single("curves", lambda f, path: curves_pages(f.results, f.view, path, f.methods), heavy=True),
    FigureKind.single(
        "surfaces", lambda f, path: surfaces_figure(f.results, f.view, f.figdir), r"surfaces(_grid_.+)?", heavy=True
    ),
]


def figure_jobs(f: FigureInputs) -> tuple[Jobs, list[str]]:
    """Every figure to draw ({name: draw}, in report order) and the names in drawing order (heavy kinds first, so
    the workers stay balanced)."""
    jobs: Jobs = {}
    heavy: set[str] = set()
    for kind in FIGURES:
        made = kind.jobs(f)
        jobs.update(made)
        heavy |= set(made) if kind.heavy else set()
    return jobs, sorted(jobs, key=lambda n: n not in heavy)


def figure_file() -> re.Pattern[str]:
    """The names of the files under `figures/` that some registered kind writes (pages and index pages included)."""
    return re.compile(rf"^({'|'.join(k.files for k in FIGURES)})(_p\d+)?\.(png|md)$")


def remove_stale_figures(figdir: Path, produced: set[Path]) -> list[Path]:
    """Remove the report's own figure files (`figure_file`) in `figdir` that this report did not write: an earlier
    report with other facets, selections or cells would otherwise leave pages that no longer match report.md.
    Other files are never touched."""
    own, removed = figure_file(), []
    for p in sorted(figdir.iterdir()) if figdir.is_dir() else []:
        if own.match(p.name) and p not in produced and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed

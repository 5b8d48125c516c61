"""The report's PNGs: written (atomically), valid images, skipped when there is nothing to plot, never pooling
cells over a hyperparameter they do not show, and paginated within the page limits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from landscape_sweep.report import facets as fc
from landscape_sweep.report import load_results, sweep_table
from landscape_sweep.report.multiples import MAX_COLS, MAX_PANELS, Panel, layout, paginate
from landscape_sweep.report.plots import barrier_vs_params, curves_pages, heatmap

PNG = b"\x89PNG\r\n\x1a\n"


def test_pngs_valid(built):
    root, paths = built
    pngs = {k: Path(v) for k, v in paths.items() if v.endswith(".png")}
    assert {"heatmap_gen_gap", "barrier_vs_params", "curves_p1", "curves_p2", "flat_vs_path"} <= set(pngs)
    assert {"trend_width_linear_loss_barrier", "trend_depth_hessian_top_eig"} <= set(pngs)
    for p in pngs.values():
        assert p.parent == root / "figures" and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG
    img = mpimg.imread(pngs["heatmap_gen_gap"])  # 2 optimizer panels side by side
    assert img.ndim == 3 and img.shape[2] in (3, 4) and img.shape[0] > 200 and img.shape[1] > 400
    assert not [p for p in (root / "figures").iterdir() if p.suffix not in (".png", ".md")]  # no temp files left


def test_nothing_to_plot(tmp_path, sweep):
    results = load_results(sweep)
    view = fc.View.of(sweep_table(results))
    assert heatmap(view, "average_case", "average-case sharpness", tmp_path / "a.png") is None  # all null
    none = dataclasses.replace(view, table=view.table[view.table["status"] != "completed"])
    assert barrier_vs_params(none, ["linear"], tmp_path / "b.png") is None
    no_conn = [dataclasses.replace(r, connectivity=[]) for r in results]
    assert curves_pages(no_conn, view, tmp_path / "c", ["linear"]) is None
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("column", ["linear/loss_barrier", "test_acc"])
def test_heatmap_single_call(tmp_path, sweep, column):
    out = heatmap(fc.View.of(sweep_table(load_results(sweep))), column, column, tmp_path / "h.png")
    assert out.paths == [tmp_path / "h.png"] and out.paths[0].read_bytes()[:8] == PNG
    assert "mean ± standard error (n)" in out.caption and "Split by" not in out.caption  # no longer the std


def two_lrs(table: pd.DataFrame, key: str = "cfg:optimizer.lr") -> pd.DataFrame:
    """The synthetic sweep run twice, at two values of `key` (the second with a higher barrier)."""
    high = table.assign(**{key: 0.3, "linear/loss_barrier_mean": table["linear/loss_barrier_mean"] + 5})
    return pd.concat([table.assign(**{key: 0.1}), high], ignore_index=True).assign(job=lambda t: t.index.astype(str))


def test_varied_hyperparameter_is_a_facet_never_averaged(tmp_path, sweep):
    table = two_lrs(sweep_table(load_results(sweep)))
    view = fc.View.of(table)
    assert view.split == ["cfg:optimizer.lr"] and view.pooled == []
    out = heatmap(view, "linear/loss_barrier", "barrier", tmp_path / "h.png")
    assert "Split by optimizer.lr" in out.caption and "never averaged" in out.caption
    img = mpimg.imread(out.paths[0])  # 2 optimizers x 2 lrs: two rows of panels, taller than one
    single = mpimg.imread(
        heatmap(fc.View.of(sweep_table(load_results(sweep))), "test_acc", "a", tmp_path / "s.png").paths[0]
    )
    assert img.shape[0] > 1.6 * single.shape[0]
    # a grid key that only co-varies with the optimizer (one value per optimizer) is not a facet
    rho = table[table["cfg:optimizer.lr"] == 0.1].assign(
        **{"cfg:optimizer.rho": lambda t: t["optimizer"].map({"sgd": None, "sam": 0.05})}
    )
    assert fc.View.of(rho).split == []


def test_replicates_are_averaged_and_said(sweep):
    table = two_lrs(sweep_table(load_results(sweep)), key="cfg:seed")
    view = fc.View.of(table)
    assert view.split == [] and view.pooled == ["cfg:seed"]
    assert "differ only in seed are averaged" in fc.caption(view.split, view.pooled, "mean")


def test_facet_and_select_options(sweep):
    table = two_lrs(sweep_table(load_results(sweep)))
    view = fc.View.of(table, fc.Options.from_config({"select": {"optimizer.lr": 0.3}}))
    assert set(view.table["cfg:optimizer.lr"]) == {0.3} and view.split == []
    view = fc.View.of(table, fc.Options.from_config({"facet": ["depth"], "select": {"optimizer": ["sam"]}}))
    assert set(view.table["optimizer"].dropna()) == {"sam"} and view.split[0] == "depth"
    with pytest.raises(ValueError, match=r"report.select.*optimizer.wd.*choose from optimizer.lr"):
        fc.View.of(table, fc.Options.from_config({"select": {"optimizer.wd": 0}}))
    with pytest.raises(ValueError, match="report.facet"):
        fc.Options.from_config({"facet": [3]})


def test_pages_and_rows_within_limits():
    # 8 depths x 10 widths: each depth starts a row, widths wrap at 4; pages hold <= 30 panels, depths unsplit
    panels = [Panel(f"d{d} w{w}", new_row=w == 0) for d in range(8) for w in range(10)]
    pages = paginate(panels)
    assert all(len(p) <= MAX_PANELS for p in pages) and sum(map(len, pages)) == 80
    assert all(p[0].new_row for p in pages)  # a page starts at a depth
    for page in pages:
        slots = layout(page)
        assert max(c for _, c in slots) < MAX_COLS
        assert len(set(slots)) == len(slots)
    big = [Panel("x", new_row=i == 0) for i in range(70)]  # one row group bigger than a page is split
    assert [len(p) for p in paginate(big)] == [30, 30, 10]


def test_curves_pages_per_optimizer(tmp_path, sweep):
    results = load_results(sweep)
    out = curves_pages(results, fc.View.of(sweep_table(results)), tmp_path / "curves", ["linear", "linear_aligned"])
    assert [p.name for p in out.paths] == ["curves_p1.png", "curves_p2.png"]  # sgd, sam
    for p in out.paths:
        img = mpimg.imread(p)
        assert img.shape[0] > 300 and np.ptp(img[..., :3]) > 0.5


def test_a_long_title_is_wrapped_to_the_figure_width():
    """A one-panel trend figure (~5 in wide) cut its one-line title off at both sides."""
    from matplotlib.figure import Figure

    from landscape_sweep.report.plots import fig_title

    fig = Figure(figsize=(5.2, 3.7))
    text = "loss barrier (linear_aligned) vs width (mean ± standard error of each cell; one y scale for every panel)"
    fig_title(fig, text)
    lines = fig._suptitle.get_text().split("\n")
    assert len(lines) == 2 and " ".join(lines) == text
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    box = fig._suptitle.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1  # inside the figure

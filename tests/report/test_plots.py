"""The report's PNGs: written (atomically), valid images, skipped when there is nothing to plot."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from landscape_sweep.report import load_results, sweep_table
from landscape_sweep.report.plots import barrier_vs_params, curves_grid, heatmap

PNG = b"\x89PNG\r\n\x1a\n"


def test_pngs_valid(built):
    root, paths = built
    pngs = {k: Path(v) for k, v in paths.items() if v.endswith(".png")}
    assert len(pngs) == 7
    for p in pngs.values():
        assert p.parent == root / "figures" and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG
    img = mpimg.imread(pngs["heatmap_gen_gap"])
    assert img.ndim == 3 and img.shape[2] in (3, 4) and img.shape[0] > 200 and img.shape[1] > 400
    grid = mpimg.imread(pngs["curves_grid"])  # 2 optimizer rows x 5 (depth, width) columns: wide
    assert grid.shape[1] > 2 * grid.shape[0]
    assert not [p for p in (root / "figures").iterdir() if p.suffix != ".png"]  # no temp files left


def test_nothing_to_plot(tmp_path, sweep):
    results = load_results(sweep)
    table = sweep_table(results)
    assert heatmap(table, "average_case", "average-case sharpness", tmp_path / "a.png") is None  # all null
    none = table[table["status"] != "completed"]
    assert barrier_vs_params(none, tmp_path / "b.png") is None
    no_conn = [dataclasses.replace(r, connectivity=[]) for r in results]
    assert curves_grid(no_conn, table, tmp_path / "c.png", ["linear"]) is None
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("column", ["linear/loss_barrier", "test_acc"])
def test_heatmap_single_call(tmp_path, sweep, column):
    table = sweep_table(load_results(sweep))
    out = heatmap(table, column, column, tmp_path / "h.png")
    assert out == tmp_path / "h.png" and out.read_bytes()[:8] == PNG

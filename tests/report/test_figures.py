"""The figure registry (`report/figures.py`) and the one pagination helper (`multiples.paginate`/`page_paths`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from landscape_sweep.report import figures
from landscape_sweep.report.figures import FigureInputs, FigureKind, figure_file, figure_jobs, remove_stale_figures
from landscape_sweep.report.multiples import page_paths, paginate
from landscape_sweep.report.plots import Drawn


def test_the_registry_matches_the_files_reports_always_wrote():
    assert figure_file().pattern == (
        r"^(heatmap_.+|barrier_vs_params|trend_(width|depth)_.+|flat_vs_path|blocks_.+|instability|curves|surfaces"
        r"(_grid_.+)?)(_p\d+)?\.(png|md)$"
    )


@dataclass
class _Row:
    new_row: bool = False


def test_one_pagination_for_plain_items_and_row_groups():
    assert [len(p) for p in paginate(list(range(70)))] == [30, 30, 10]  # heatmap facets, surface tiles
    rows = [_Row(new_row=i % 8 == 0) for i in range(32)]  # 4 rows of 8: a row is never split across pages
    assert [len(p) for p in paginate(rows)] == [24, 8]
    stem = Path("figs/heatmap_x.png")
    assert page_paths(stem, 1, number_one=False) == [stem]
    assert page_paths(stem, 2) == [Path("figs/heatmap_x_p1.png"), Path("figs/heatmap_x_p2.png")]
    assert page_paths(Path("figs/curves.png"), 1) == [Path("figs/curves_p1.png")]


def test_a_figure_is_one_registry_entry(monkeypatch, tmp_path):
    def toy_figure(path: Path) -> Drawn:
        path.write_text("png")
        return Drawn([path], "a toy")

    toy = FigureKind.single("toy", lambda f, path: toy_figure(path), heavy=True)
    monkeypatch.setattr(figures, "FIGURES", [*figures.FIGURES, toy])
    inputs = FigureInputs([], None, None, ["linear"], pd.DataFrame(), {}, {}, tmp_path)
    jobs, order = figure_jobs(inputs)
    assert list(jobs)[-1] == "toy" and order.index("toy") < order.index("heatmap_test_acc")  # heavy kinds first
    assert jobs["toy"]().paths == [tmp_path / "toy.png"]
    stale = [tmp_path / "toy_p2.png", tmp_path / "heatmap_old.png", tmp_path / "notes.png"]
    for p in stale:
        p.write_text("old")
    removed = remove_stale_figures(tmp_path, {tmp_path / "toy.png"})
    assert removed == [tmp_path / "heatmap_old.png", tmp_path / "toy_p2.png"]  # a user's notes.png is kept
    assert (tmp_path / "toy.png").exists() and (tmp_path / "notes.png").exists()

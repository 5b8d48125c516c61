"""The report of a 1,200-cell sweep (depth 1-8 × width 8-4096 × 5 optimizers × 3 learning rates, cells copied
from the synthetic test sweep by benchmarks/report_scale.py): built in bounded time, the learning rate never
pooled, every page within its panel limits, large figure sets linked instead of inlined."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

from landscape_sweep.report import build_report
from tests._support.sweep import make_sweep

REPO = Path(__file__).resolve().parents[2]


def synthesiser():
    spec = importlib.util.spec_from_file_location("report_scale", REPO / "benchmarks" / "report_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_report_of_1200_cells(tmp_path):
    bench = synthesiser()
    root = tmp_path / "sweep"
    assert bench.synthesise(make_sweep(tmp_path / "source"), root, 1200) == 1200
    t0 = time.perf_counter()
    paths = build_report(root)
    elapsed = time.perf_counter() - t0
    assert elapsed < 300, f"report of 1,200 cells took {elapsed:.0f} s"  # ~60 s on 2 cores; a generous bound

    table = pd.read_csv(root / "sweep_results.csv")
    assert len(table) == 1200 and set(table["cfg:optimizer.lr"]) == {0.01, 0.031623, 0.1}
    text = (root / "report.md").read_text()
    figures = text.split("## Figures\n", 1)[1].split("\n## ", 1)[0]
    # no pooling: every per-cell figure is split by the learning rate it does not show, and says so
    for name in ("heatmap_test_acc", "curves", "trend_width_linear_loss_barrier"):
        caption = re.search(rf"\*\*{name}\*\* — (.*)", figures).group(1)
        assert "Split by optimizer.lr (varied in this sweep; never averaged)" in caption, name
    assert "mean of" not in figures  # no square averages several cells

    pngs = {k: Path(v) for k, v in paths.items() if v.endswith(".png")}
    curves = sorted(k for k in pngs if k.startswith("curves_p"))
    assert len(curves) == 5 * 3 * 3  # per optimizer × lr: 8 depths of 10 panels, 3 depths (30 panels) a page
    for k, p in pngs.items():
        h, w = mpimg.imread(p).shape[:2]
        assert w <= 2400 and h <= 2400, (k, w, h)  # bounded: wraps and pages, never one unbounded figure
    assert "[45 pages: figures/curves.md](figures/curves.md)" in figures
    assert len(re.findall(r"!\[", text)) < 40  # large sets are linked, not inlined
    assert (root / "figures" / "curves.md").read_text().count("![") == 45
    # the cell table is cut in report.md; trends have a row per (optimizer, depth, lr) group
    assert "_First 100 of 1200 cells; all of them are in `sweep_results.csv`._" in text
    trends = pd.read_csv(root / "trends.csv")
    width = trends[(trends["axis"] == "width") & (trends["measure"] == "linear/loss_barrier")]
    assert len(width) == 5 * 8 * 3 and width["converged"].mean() > 0.9

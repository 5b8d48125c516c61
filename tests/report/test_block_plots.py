"""The per-block curvature figure and report section: block order, positions, values, facets, the summary table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from landscape_sweep.report import block_plots
from landscape_sweep.report import facets as fc

EIGS = {  # (depth, optimizer) -> top eigenvalue per block in forward order
    (2, "sgd"): [1.0, 2.0, 4.0],
    (3, "sgd"): [1.0, 1.5, 3.0, 6.0],
    (2, "sam"): [0.5, 1.0, 2.0],
}


def table() -> pd.DataFrame:
    rows = []
    for (depth, opt), eigs in EIGS.items():
        names = [f"layer{i}" for i in range(1, depth + 1)] + ["head"]
        row = {"job": f"{depth}{opt}", "status": "completed", "arch": "mlp", "depth": depth, "width": 16}
        row |= {"optimizer": opt, "num_params": 100}
        for name, e in reversed(list(zip(names, eigs))):  # columns out of order: the figure sorts the blocks
            row |= {f"block/{name}/hessian_top_eig_{k}": v for k, v in (("mean", e), ("std", 0.1), ("n", 3))}
        row |= {"block/first_trace_fraction_mean": 0.25, "block/first_trace_fraction_std": 0.01}
        row |= {"block/first_trace_fraction_n": 3, "block/sharpest_position_mean": 1.0, "block/sharpest_position_n": 3}
        rows.append(row)
    rows.append({"job": "failed", "status": "failed", "depth": 4, "width": 16, "optimizer": "sgd"})
    return pd.DataFrame(rows)


def test_block_order():
    names = ["head", "stage2", "stem", "stage10", "stage1"]
    assert sorted(names, key=block_plots.block_order) == ["stem", "stage1", "stage2", "stage10", "head"]
    assert block_plots.block_names(table(), "hessian_top_eig") == ["layer1", "layer2", "layer3", "head"]
    assert block_plots.block_names(table(), "hessian_trace") == []


def test_block_figure_draws_each_depth_at_relative_positions(tmp_path, monkeypatch):
    figs = []
    monkeypatch.setattr(block_plots, "save_png", lambda fig, path: figs.append(fig) or path)
    drawn = block_plots.block_figure(fc.View.of(table()), "hessian_top_eig", tmp_path / "b.png")
    assert drawn is not None and "one line per depth" in drawn.caption.lower()
    (fig,) = figs
    axes = [ax for ax in fig.axes if ax.axison]
    assert len(axes) == 2  # one panel per optimizer (× width)
    lines = {ax.texts[0].get_text().split("\n")[0]: [ln.get_xydata() for ln in ax.get_lines()] for ax in axes}
    sgd = sorted(lines["sgd"], key=len)
    np.testing.assert_allclose(sgd[0], np.column_stack([[0, 0.5, 1], EIGS[(2, "sgd")]]))
    np.testing.assert_allclose(sgd[1], np.column_stack([[0, 1 / 3, 2 / 3, 1], EIGS[(3, "sgd")]]))
    np.testing.assert_allclose(lines["sam"][0], np.column_stack([[0, 0.5, 1], EIGS[(2, "sam")]]))
    assert block_plots.block_figure(fc.View.of(table()), "hessian_trace", tmp_path / "t.png") is None


def test_blocks_section_table():
    text = block_plots.blocks_section(table())
    assert "| mlp | 3 | 16 | sgd | 4 | 0.25 ± 0.01 (3) |  | 1 (n=3) |" in text
    assert "failed" not in text
    assert block_plots.blocks_section(table().filter(regex="^(?!block/)")) == ""


@pytest.mark.parametrize("log", [False, True])
def test_log_scale_only_for_a_wide_range(tmp_path, monkeypatch, log):
    figs = []
    monkeypatch.setattr(block_plots, "save_png", lambda fig, path: figs.append(fig) or path)
    t = table()
    if log:
        t["block/head/hessian_top_eig_mean"] *= 100
    block_plots.block_figure(fc.View.of(t), "hessian_top_eig", tmp_path / "b.png")
    assert [ax.get_yscale() for ax in figs[0].axes if ax.axison][0] == ("log" if log else "linear")

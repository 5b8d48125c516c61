"""report.md's quality warnings: unconverged per-block Lanczos at endpoints and along paths."""

from __future__ import annotations

import pandas as pd
import pytest

from landscape_sweep.report.quality import quality_warnings, train_loss_spread
from landscape_sweep.results import CellResult, Endpoint, PathEntry


def cell(end_ok: bool, path_ok: bool) -> CellResult:
    blocks = [{"name": "layer1", "top_eig": 1.0, "top_eig_converged": True}]
    blocks.append({"name": "head", "top_eig": 2.0, "top_eig_converged": end_ok})
    ends = [Endpoint(seed=k, sharpness={"blocks": blocks, "analysis_size": 2000}) for k in range(3)]
    along = {
        "t": [0.5],
        "hessian_top_eig": [3.0],
        "blocks": {"head": {"top_eig": [2.0], "top_eig_converged": [path_ok]}},
    }
    paths = [PathEntry(pair=list(p), method="linear", sharpness_along_path=along) for p in ((0, 1), (0, 2), (1, 2))]
    return CellResult(status="completed", endpoints=ends, connectivity=paths, job="d4")


@pytest.mark.parametrize(("end_ok", "path_ok"), [(False, True), (True, False)])
def test_unconverged_block_eigenvalues_are_named(end_ok, path_ok):
    (warning,) = quality_warnings([cell(end_ok, path_ok)])
    assert warning.startswith("Lanczos did not converge for a block's top eigenvalue (per-block curvature) in `d4`")


def test_converged_blocks_give_no_warning():
    assert quality_warnings([cell(True, True)]) == []


def test_high_loss_and_unconverged_curves_are_listed_per_method():
    """`fit.high_loss` (written by newer cells; absent in older ones) lists the curves like unconverged ones."""
    fits = [{"converged": True, "high_loss": True}, {"converged": False, "high_loss": True}, {"converged": True}]
    paths = [PathEntry(pair=[0, k + 1], method="bezier", fit=f) for k, f in enumerate(fits)]
    r = CellResult(status="completed", endpoints=[Endpoint(seed=k) for k in range(3)], connectivity=paths, job="c")
    unconverged, high = quality_warnings([r])
    assert unconverged.startswith("Fitted curves stopped at their epoch cap before converging in `c (bezier: 1)`")
    assert high.startswith("Fitted curves whose train loss along t stays well above their endpoints' in "
                           "`c (bezier: 2)`")  # fmt: skip


def test_train_losses_that_differ_materially_are_said_in_one_line():
    """The mini-study compared cells at 1.35 and 0.007: the line names the range and the cells at either end."""
    rows = [("0", 1, 16, "sgd", 1.35), ("1", 2, 64, "sam", 0.007), ("2", 2, 16, "sgd", 0.3), ("3", 4, 16, "sgd", 99)]
    table = pd.DataFrame(rows, columns=["job", "depth", "width", "optimizer", "train_loss_mean"])
    table["status"] = ["completed"] * 3 + ["failed"]  # a failed cell's loss is not compared
    line = train_loss_spread(table)
    assert line.startswith(
        "The compared cells end at very different train losses: mean endpoint train loss from "
        "0.007 in `1` (depth 2, width 64, sam) to 1.35 in `0` (depth 1, width 16, sgd) (193x)"
    )
    close = table.assign(train_loss_mean=[0.1, 0.15, 0.19, 5.0])
    assert train_loss_spread(close) is None  # within 2x

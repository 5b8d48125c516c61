"""report.md's quality warnings: unconverged per-block Lanczos at endpoints and along paths."""

from __future__ import annotations

import pytest

from landscape_sweep.report.quality import quality_warnings
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

"""The thorough preset in one in-process cell: spectra, PolyChain, REPAIR, loss surfaces around endpoints and curve
planes."""

from __future__ import annotations

import math

import pytest

from landscape_sweep.pipeline.cell import run_cell


@pytest.mark.slow
def test_thorough_preset_adds_spectrum_polychain_and_surfaces(compose_cfg, tmp_path):
    cfg = compose_cfg(
        [
            "logger=none",
            "landscape=thorough",
            "trainer.max_epochs=3",
            "data.train_size=512",
            "model.width=16",
            "model.norm=batchnorm",
            "endpoints.seeds=[0,1]",
            "trainer.enable_progress_bar=false",
            "landscape.surface.num_points=5",
            "landscape.connectivity.num_points=5",
            "landscape.sharpness.trace_probes=10",
            "landscape.analysis_size=256",
            "landscape.connectivity.curve.max_epochs=10",
        ]
    )
    r = run_cell(cfg, tmp_path / "job")
    assert r.status == "completed", r.error
    for e in r.endpoints:
        spec = e.sharpness["hessian_spectrum"]
        assert sum(spec["weights"]) == pytest.approx(1.0)
        assert len(e.sharpness["hessian_top_eigs"]) == 5
        surf = e.loss_surface
        assert len(surf["x"]) == len(surf["y"]) == 5 and len(surf["loss"]) == 5 and len(surf["loss"][0]) == 5
        centre = surf["loss"][2][2]  # the unperturbed model, BN recomputed on the training data
        assert math.isfinite(centre) and centre == pytest.approx(min(min(row) for row in surf["loss"]), abs=0.5)
    methods = [c.method for c in r.connectivity]
    assert methods == ["linear", "linear_aligned", "linear_aligned_repair", "bezier", "polychain"]
    for c in r.connectivity:
        assert (c.plane_surface is not None) == (c.method in ("bezier", "polychain"))
        assert len(c.sharpness_along_path["t"]) == 3
    aligned, repaired = r.connectivity[1:3]  # BatchNorm: REPAIR is the BN reset, the aligned path's numbers
    assert repaired.repair["layers"] == 0 and repaired.train_loss == aligned.train_loss
    plane = r.connectivity[3].plane_surface
    assert len(plane["models_xy"]) == 3 and len(plane["loss"]) == 5
    # the cell draws its surfaces (contours of every endpoint surface and curve plane) beside results.json
    assert (tmp_path / "job" / "surfaces.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""`linear_aligned_repair` through a cell: validated as a method, evaluated like the other paths, written to
results.json with its `repair` block, summarised for W&B and the report."""

from __future__ import annotations

import math

import pytest
import torch

from landscape_sweep.data import TensorLoader
from landscape_sweep.models import build_model
from landscape_sweep.pipeline.cell import run_cell
from landscape_sweep.pipeline.config import validate
from landscape_sweep.pipeline.measures import AnalysisData, pair_paths
from landscape_sweep.pipeline.tracking import summary_metrics
from landscape_sweep.report.markdown import cells_section
from landscape_sweep.report.table import sweep_table
from landscape_sweep.results import read_json, validate_results
from tests._support.cli import FAST
from tests._support.wandb_offline import offline_runs, read_run

METHODS = "landscape.connectivity.methods=[linear_aligned,linear_aligned_repair]"
CELL = [
    *FAST,
    "landscape=fast",
    "model.norm=none",
    "landscape.analysis_size=128",
    "landscape.connectivity.num_points=5",
    "landscape.connectivity.sharpness_points=[0.5]",
    METHODS,
]


def test_an_unknown_method_fails_in_one_line_naming_repair(compose_cfg):
    with pytest.raises(ValueError, match=r"^landscape\.connectivity\.methods=.*linear_aligned_repair") as e:
        validate(compose_cfg([*CELL, "landscape.connectivity.methods=[linear,repair]"]))
    assert "\n" not in str(e.value)
    validate(compose_cfg(CELL))


def test_the_repaired_path_reaches_results_json_wandb_and_the_report(compose_cfg, tmp_path):
    job = tmp_path / "job"
    r = run_cell(compose_cfg([*CELL, "logger=wandb"]), job)
    assert r.status == "completed", r.error
    assert validate_results(read_json(job / "results.json")) is None
    aligned, repaired = r.connectivity
    assert (aligned.method, repaired.method) == ("linear_aligned", "linear_aligned_repair")
    assert repaired.repair["layers"] == 2 and repaired.repair["units"] == 2 * 16  # mlp depth 2, width 16
    assert repaired.repair["stats_samples"] == 128  # the probe subset
    assert len(repaired.repair["std_ratio"]) == 5 and repaired.repair["std_ratio"][0] == pytest.approx(1.0)
    assert aligned.repair is None
    for i in (0, -1):  # the same endpoints (A and the aligned B), different points between them
        assert repaired.train_loss[i] == pytest.approx(aligned.train_loss[i], rel=1e-4)
    assert repaired.train_loss[2] != pytest.approx(aligned.train_loss[2], rel=1e-4)
    assert repaired.endpoint_distance == pytest.approx(aligned.endpoint_distance, rel=1e-5)
    assert repaired.path_curvature > 0 and math.isfinite(repaired.sharpness_along_path["hessian_top_eig"][0])

    names = summary_metrics(r)
    summary = read_run(offline_runs(job)[0])["summary"]
    for key in ("landscape/linear_aligned_repair/loss_barrier", "landscape/linear_aligned_repair/error_barrier"):
        assert summary[key] == pytest.approx(names[key]), key
    logged = set().union(*read_run(offline_runs(job)[0])["history"])
    assert any(k.startswith("connectivity/linear_aligned_repair") for k in logged)

    table = sweep_table([r])
    assert table["linear_aligned_repair/loss_barrier_mean"][0] == pytest.approx(repaired.loss_barrier)
    assert "barrier linear_aligned_repair" in cells_section(table)


def test_with_batchnorm_the_repaired_path_is_the_aligned_one(compose_cfg):
    cfg = validate(compose_cfg([*CELL, "model.norm=batchnorm", "landscape.connectivity.sharpness_points=[]"]))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 40, generator=g), torch.randint(0, 10, (64,), generator=g)
    loader = TensorLoader(x, y, batch_size=32)
    ad = AnalysisData(probe=loader, train=loader, test=loader, curve_train=loader)
    torch.manual_seed(0)
    a, b = (build_model("mlp", (1, 40), 10, 2, 8, "batchnorm").eval() for _ in range(2))
    aligned, repaired = pair_paths(a, b, (0, 1), ad, cfg["landscape"], seed=0)
    assert repaired.method == "linear_aligned_repair" and repaired.repair["layers"] == 0
    assert repaired.repair["stats_samples"] == 0 and repaired.repair["std_ratio"] is None
    assert repaired.train_loss == aligned.train_loss and repaired.loss_barrier == aligned.loss_barrier

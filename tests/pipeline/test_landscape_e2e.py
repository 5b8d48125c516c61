"""Issue 6 end to end: a landscape=fast multirun through the CLI (its `main` in this process), W&B read-back, report,
re-analysis."""

from __future__ import annotations

import json
import math

import pytest

from tests._support.cli import check_completed, only
from tests._support.wandb_offline import offline_runs, read_run

pytestmark = pytest.mark.slow

SHARPNESS = ("hessian_trace", "hessian_trace_stderr", "worst_case", "average_case", "adaptive_worst_case")
PATH_FIELDS = (
    "loss_barrier",
    "error_barrier",
    "test_loss_barrier",
    "test_error_barrier",
    "loss_barrier_mean",
    "path_length",
    "endpoint_distance",
    "path_curvature",
    "arc_chord_ratio",
)
ANALYSIS = {"connectivity", "config_hash", "timing_s"}


def finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def test_fast_landscape_sweep_end_to_end(run_main, tmp_path):
    sweep = tmp_path / "sweep"
    run_main(
        [
            "-m",
            "data.train_size=512,99999",
            "landscape=fast",
            "landscape.checkpoint_epochs=[2]",
            "trainer.max_epochs=4",
            "model.width=16",
            "endpoints.seeds=[0,1]",
            "logger=wandb",
            "trainer.enable_progress_bar=false",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    job = sweep / "0"
    r = check_completed(job)
    for e in r["endpoints"]:
        s = e["sharpness"]
        assert len(s["hessian_top_eigs"]) == 1 and finite(s["hessian_top_eigs"][0]) and s["hessian_top_eigs"][0] > 0
        assert all(finite(s[k]) for k in SHARPNESS), s
        assert s["worst_case"] >= s["average_case"] - 3 * s["average_case_stderr"]
        assert [p["epoch"] for p in e["trajectory"]] == [2, 4]
        assert all(finite(p["hessian_top_eig"]) and finite(p["train_loss"]) for p in e["trajectory"])
    conn = r["connectivity"]
    assert [(c["pair"], c["method"]) for c in conn] == [([0, 1], m) for m in ("linear", "linear_aligned", "bezier")]
    for c in conn:
        assert len(c["t"]) == 11 and c["t"][0] == 0 and c["t"][-1] == 1
        for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert len(c[k]) == 11 and all(finite(v) for v in c[k]), k
        assert all(finite(c[k]) for k in PATH_FIELDS), c
        assert c["sharpness_along_path"]["t"] == [0.5] and finite(c["sharpness_along_path"]["hessian_top_eig"][0])
    linear = conn[0]
    assert linear["path_curvature"] == pytest.approx(0, abs=1e-6) and linear["arc_chord_ratio"] == pytest.approx(1)
    # the endpoints of every path are the trained endpoints
    for c in conn:
        assert c["train_loss"][0] == pytest.approx(r["endpoints"][0]["train_loss"], rel=1e-4)
    assert conn[0]["train_loss"][-1] == pytest.approx(r["endpoints"][1]["train_loss"], rel=1e-4)
    assert (job / "curves.csv").read_text().count("\n") == 1 + 3 * 11
    assert (job / "connectivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    run = read_run(only(offline_runs(job)))
    summary = run["summary"]
    for key in (
        "landscape/linear/loss_barrier",
        "landscape/linear_aligned/loss_barrier",
        "landscape/bezier/loss_barrier",
        "sharpness/hessian_top_eig",
        "sharpness/hessian_trace",
        "test/acc",
        "gen_gap",
    ):
        assert finite(summary.get(key)), key
    logged = set().union(*run["history"])
    for prefix in (
        "connectivity/linear",
        "connectivity/bezier",
        "plots/train_loss_along_paths",
        "plots/seed0_hessian_top_eigs",
        "cell/connectivity",
        "seed0/sharpness/hessian_top_eig",
    ):
        # wandb.plot charts are stored as "<key>_table" tables plus a panel spec
        assert any(k == prefix or k.startswith((prefix + "/", prefix + "_table/")) for k in logged), prefix

    failed = json.loads((sweep / "1" / "results.json").read_text())
    assert failed["status"] == "failed"
    report = (sweep / "report.md").read_text()
    assert "failed" in report and "data.train_size" in report
    assert (sweep / "sweep_results.csv").is_file()

    before = json.loads((job / "results.json").read_text())
    out = run_main(
        [
            str(sweep),
            "landscape=fast",
            "landscape.connectivity.num_points=5",
            "landscape.connectivity.methods=[linear,polychain]",
        ],
        module="landscape_sweep.analyze",
        check=False,
    )
    assert out.returncode == 1 and "only completed cells" in out.stderr  # the failed cell is reported, not hidden
    after = json.loads((job / "results.json").read_text())
    assert [c["method"] for c in after["connectivity"]] == ["linear", "polychain"]
    assert all(len(c["t"]) == 5 for c in after["connectivity"])
    for key in set(before) - ANALYSIS - {"config", "endpoints"}:
        assert after[key] == before[key], key
    assert {k: v for k, v in after["config"].items() if k != "landscape"} == {
        k: v for k, v in before["config"].items() if k != "landscape"
    }
    for b, a in zip(before["endpoints"], after["endpoints"]):
        assert {k: v for k, v in a.items() if k not in ("sharpness", "trajectory")} == {
            k: v for k, v in b.items() if k not in ("sharpness", "trajectory")
        }
        assert a["trajectory"][0] == b["trajectory"][0]  # in-training points kept
    analysis_runs = [read_run(p) for p in offline_runs(job)]
    assert sorted(r["run"]["job_type"] for r in analysis_runs) == ["analysis", "sgd"]

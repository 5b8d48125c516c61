"""The cell's measurements as a reviewer would check them (issue: trustworthy numbers), in-process cells.

- fitted curves train on reshuffled minibatches of `landscape.connectivity.curve.batch_size` and record a fit block;
  the report warns on curves that hit their epoch cap;
- every trajectory point is one measurement with one budget on the probe subset, stderr kept, weights labelled;
- `trainer.stop_at` stops at the criterion and the report flags endpoints that never reached it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from landscape_sweep.analyze import reanalyze_cell
from landscape_sweep.landscape import evaluate
from landscape_sweep.pipeline import measures
from landscape_sweep.pipeline.cell import load_cell_data, run_cell
from landscape_sweep.pipeline.config import validate
from landscape_sweep.pipeline.endpoint import load_endpoint
from landscape_sweep.report import build_report
from landscape_sweep.results import PathEntry, read_results

SMALL = [
    "logger=none",
    "landscape=fast",
    "trainer.max_epochs=3",
    "data.train_size=256",
    "model.width=16",
    "endpoints.seeds=[0,1]",
    "trainer.enable_progress_bar=false",
    "landscape.analysis_size=128",
    "landscape.connectivity.num_points=5",
    "landscape.connectivity.sharpness_points=[]",
]


def test_curve_minibatches_follow_curve_batch_size(compose_cfg):
    c = validate(compose_cfg([*SMALL, "landscape.connectivity.curve.batch_size=16"]))
    data = load_cell_data(c)
    ad = measures.analysis_data(c, data)
    assert ad.curve_train.batch_size == 16 and len(ad.curve_train) == 16  # 256 samples
    first = [y.clone() for _, y in ad.curve_train]
    ad.curve_train.set_epoch(1)
    again = [y.clone() for _, y in ad.curve_train]
    assert not all(torch.equal(a, b) for a, b in zip(first, again))  # reshuffled every epoch
    assert ad.probe.batch_size == c["data"]["eval_batch_size"] and len(ad.probe.y) == 128


@pytest.mark.slow
def test_curve_batch_size_changes_the_fit_and_fit_block_is_recorded(compose_cfg, tmp_path):
    """The old pipeline fitted curves on the evaluation loader: batch_size 16 and 128 gave the same barrier."""
    job = tmp_path / "job"
    fixed = ["landscape.connectivity.methods=[bezier]", "landscape.connectivity.curve.max_epochs=2"]
    r = run_cell(compose_cfg([*SMALL, *fixed]), job)
    assert r.status == "completed", r.error
    fits = {}
    for bs in (16, 128):
        land = compose_cfg([*SMALL, *fixed, f"landscape.connectivity.curve.batch_size={bs}"]).landscape
        from omegaconf import OmegaConf

        out = reanalyze_cell(job, OmegaConf.to_container(land, resolve=True))
        (path,) = out.connectivity
        assert path.fit["epochs"] == 2 and len(path.fit["history"]) == 2 and path.fit["converged"] is False
        fits[bs] = (path.fit["history"], path.path_length)
    assert fits[16][0] != pytest.approx(fits[128][0], rel=1e-3)  # other minibatches, other fit
    assert fits[16][1] != pytest.approx(fits[128][1], rel=1e-6)  # another bend
    stored = read_results(job).connectivity[0]
    assert stored.fit["epochs"] == 2 and "final_loss" in stored.fit
    text = Path(build_report(job)["report"]).read_text()
    assert "Fitted curves stopped at their epoch cap before converging" in text


@pytest.mark.slow
def test_trajectory_points_one_budget_one_subset_labelled(compose_cfg, tmp_path):
    cfg = compose_cfg(
        [*SMALL, "optimizer=swa", "landscape.checkpoint_epochs=[1,2]", "landscape.connectivity.methods=[linear]"]
    )
    r = run_cell(cfg, tmp_path / "job")
    assert r.status == "completed", r.error
    c = validate(cfg)
    data = load_cell_data(c)
    probe = measures.analysis_data(c, data).probe
    for e in r.endpoints:
        traj = e.trajectory
        assert [p["epoch"] for p in traj] == [1, 2, 3]
        assert [p["weights"] for p in traj] == ["running", "running", "swa_average"]
        keys = set(traj[0])
        assert all(set(p) == keys for p in traj) and "hessian_trace_stderr" in keys
        assert all(p["hessian_trace_stderr"] > 0 and p["hessian_top_eig_converged"] in (True, False) for p in traj)
        # the final point is measured on the probe subset, like the others (not on the full training set)
        model = load_endpoint(c, data, tmp_path / "job" / e.checkpoint)
        loss, _ = evaluate(model, probe)
        assert traj[-1]["train_loss"] == pytest.approx(loss, rel=1e-6)
        assert traj[-1]["hessian_top_eig"] == pytest.approx(e.sharpness["hessian_top_eigs"][0], rel=1e-6)


@pytest.mark.slow
def test_stop_at_criterion(compose_cfg, tmp_path):
    reached = run_cell(compose_cfg([*SMALL, "trainer.stop_at.train_acc=0.01", "endpoints.seeds=[0]"]), tmp_path / "a")
    assert reached.status == "completed", reached.error
    (e,) = reached.endpoints
    assert e.epochs == 1 and e.stop == {"criterion": {"train_acc": 0.01}, "reached": True, "epoch": 1}
    never = run_cell(compose_cfg([*SMALL, "trainer.stop_at.train_loss=1e-9", "endpoints.seeds=[0]"]), tmp_path / "b")
    (e,) = never.endpoints
    assert e.epochs == 3 and e.stop["reached"] is False and e.stop["epoch"] is None
    text = Path(build_report(tmp_path / "b")["report"]).read_text()
    assert "never reached the `trainer.stop_at` criterion" in text


def test_stop_at_bad_values(compose_cfg):
    from landscape_sweep.pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=r"^trainer.stop_at.train_acc=1.5: must be a finite number > 0 and <= 1$"):
        validate(compose_cfg(["trainer.stop_at.train_acc=1.5"]))
    with pytest.raises(ConfigError, match=r"^trainer.stop_at.loss: unknown key"):
        validate(compose_cfg(["+trainer.stop_at.loss=0.1"]))


def test_sharpness_along_a_path_matches_the_direct_hessian():
    """The top eigenvalue along a segment is the one of the interpolated model (BN recomputed) on the probe."""
    from landscape_sweep.data import TensorLoader
    from landscape_sweep.landscape import hessian_eigenvalues, interpolate
    from landscape_sweep.models import build_model

    torch.manual_seed(0)
    a, b = (build_model("mlp", (12,), 3, 2, 8, norm="batchnorm").double() for _ in range(2))
    x, y = torch.randn(96, 12, dtype=torch.float64), torch.randint(0, 3, (96,))
    loader = TensorLoader(x, y, batch_size=32)
    ad = measures.AnalysisData(probe=loader, train=loader, test=loader, curve_train=loader)
    sharp = {"tol": 1e-6, "max_iter": 50}
    out = measures.sharpness_along((a, b), [0.25, 0.5], ad, sharp, seed=0)
    assert out["t"] == [0.25, 0.5]
    for t, eig in zip(out["t"], out["hessian_top_eig"]):
        ref = hessian_eigenvalues(interpolate(a, b, t, loader), loader, k=1, tol=1e-6, max_iter=50, seed=1)[0]
        assert eig == pytest.approx(ref, rel=1e-4)


def test_per_block_curvature_at_endpoints_and_along_paths():
    """`sharpness.per_block`: each block's numbers are `block_curvature`'s on the endpoint and on the path point."""
    from landscape_sweep.data import TensorLoader
    from landscape_sweep.landscape import block_curvature, interpolate
    from landscape_sweep.models import build_model
    from landscape_sweep.pipeline.tracking import wandb_name

    torch.manual_seed(0)
    a, b = (build_model("mlp", (12,), 3, 2, 6, norm="batchnorm").double() for _ in range(2))
    x, y = torch.randn(64, 12, dtype=torch.float64), torch.randint(0, 3, (64,))
    loader = TensorLoader(x, y, batch_size=32)
    ad = measures.AnalysisData(probe=loader, train=loader, test=loader, curve_train=loader)
    sharp = {"tol": 1e-6, "max_iter": 40, "top_k": 1, "trace_probes": 8, "kinds": [], "per_block": True}
    out = measures.endpoint_sharpness(a, loader, sharp, seed=0)
    ref = block_curvature(a, loader, tol=1e-6, max_iter=40, num_probes=8, seed=0)
    assert out["blocks"] == ref and [r["name"] for r in ref] == ["layer1", "layer2", "head"]
    total = sum(r["trace"] for r in ref)
    assert out["block_concentration"]["last_trace_fraction"] == pytest.approx(ref[-1]["trace"] / total)
    assert "blocks" not in measures.endpoint_sharpness(a, loader, sharp | {"per_block": False}, seed=0)
    along = measures.sharpness_along((a, b), [0.5], ad, sharp, seed=0)
    mid = block_curvature(interpolate(a, b, 0.5, loader), loader, tol=1e-6, max_iter=40, trace=False, seed=0)
    assert list(along["blocks"]) == ["layer1", "layer2", "head"]
    for r in mid:
        assert along["blocks"][r["name"]]["top_eig"] == [pytest.approx(r["top_eig"], rel=1e-9)]
        assert along["blocks"][r["name"]]["top_eig_converged"] == [r["top_eig_converged"]]
    assert wandb_name("block/head/hessian_trace") == "sharpness/block/head/hessian_trace"
    assert wandb_name("block/last_trace_fraction") == "sharpness/block/last_trace_fraction"


def test_per_block_must_be_a_bool(compose_cfg):
    from landscape_sweep.pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=r"^landscape.sharpness.per_block='yes': must be true or false$"):
        validate(compose_cfg(["landscape.sharpness.per_block=yes"]))
    validate(compose_cfg(["landscape.sharpness.per_block=true"]))


def test_quadratic_ratio_by_hand():
    got = measures.quadratic_ratio(
        {"average_case": 3e-5, "average_case_stderr": 3e-6, "hessian_trace": 4.0, "hessian_trace_stderr": 0.4}, 0.005
    )
    quad = 0.005**2 * 4.0 / 2  # 5e-5
    assert got["average_case_ratio"] == pytest.approx(3e-5 / quad)
    assert got["average_case_ratio_stderr"] == pytest.approx(0.6 * (0.1**2 + 0.1**2) ** 0.5)
    assert measures.quadratic_ratio({"average_case": 1.0, "hessian_trace": -2.0}, 0.01) == {}


def test_a_curve_that_keeps_much_of_the_linear_barrier_is_flagged_high_loss():
    def entry(method, barrier, fit=None):
        return PathEntry(pair=[0, 1], method=method, loss_barrier=barrier, fit=fit)

    ok, high, tiny = ({"converged": True} for _ in range(3))
    flagged = measures.flag_high_loss([entry("linear", 2.0), entry("bezier", 0.3, ok), entry("polychain", 0.5, high)])
    assert [p.fit["high_loss"] for p in flagged[1:]] == [False, True]  # 15 % and 25 % of the linear barrier
    near_zero = measures.flag_high_loss([entry("linear", 0.02), entry("bezier", 0.008, tiny)])
    assert near_zero[1].fit["high_loss"] is False  # 40 % of a tiny barrier, but below the 0.01 floor
    alone = measures.flag_high_loss([entry("bezier", 0.3, {"converged": True})])
    assert alone[0].fit["high_loss"] is None  # no linear path of this pair to compare with


def test_endpoint_ood_marks_control_sets():
    from landscape_sweep.data import TensorLoader

    x, y = torch.randn(32, 1, 40), torch.randint(0, 10, (32,))
    loader = TensorLoader(x, y, batch_size=16)
    ad = measures.AnalysisData(loader, loader, loader, loader, {"noisy": loader, "control": loader}, ("control",))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 10))
    out = measures.endpoint_ood(model, ad)
    assert out["control"]["control"] is True and "control" not in out["noisy"]
    assert out["noisy"]["acc"] == out["control"]["acc"]

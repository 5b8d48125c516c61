"""`data.ood` through a cell: the numbers in results.json are the saved endpoints' on independently built shifted
sets, the paths' OOD curves start and end at the endpoints', every mode and re-analysis agree, and the summaries
reach cell_stats and W&B under their names."""

from __future__ import annotations

import pytest

from landscape_sweep.analyze import reanalyze_cell
from landscape_sweep.data import load_data
from landscape_sweep.landscape import evaluate
from landscape_sweep.landscape.paths import barrier
from landscape_sweep.pipeline.cell import run_cell
from landscape_sweep.pipeline.config import analysis_only, config_changes, config_hash, validate
from landscape_sweep.pipeline.endpoint import endpoint_dir, load_endpoint
from landscape_sweep.pipeline.tracking import summary_metrics
from landscape_sweep.results import cell_stats, read_json, validate_results
from tests._support.wandb_offline import offline_runs, read_run

SHIFTED = {
    "name": "shifted",
    "seed": 1,
    "iid_noise_scale": 0.05,
    "corr_noise_scale": 0.4,
    "scale_coeff": 0.6,
    "shear_scale": 1.0,
}  # fmt: skip  (the mnist1d preset's, so the session cache serves it)
FRESH = {"name": "fresh", "seed": 5}  # the clean distribution, a new draw
OOD = "data.ood=[{name:shifted,seed:1,iid_noise_scale:0.05,corr_noise_scale:0.4,scale_coeff:0.6,shear_scale:1.0},{name:fresh,seed:5}]"  # noqa: E501
TINY = [
    "trainer.max_epochs=3",
    "data.train_size=256",
    "model.width=16",
    "endpoints.seeds=[0,1,2]",
    "trainer.enable_progress_bar=false",
    "landscape=fast",
    "landscape.checkpoint_epochs=[]",
    "landscape.analysis_size=64",
    "landscape.connectivity.methods=[linear,linear_aligned]",
    "landscape.connectivity.num_points=5",
    "landscape.connectivity.sharpness_points=[]",
    OOD,
]
NAMES = ("shifted", "fresh")


def _run(compose_cfg, job, *overrides):
    r = run_cell(compose_cfg([*TINY, *overrides]), job)
    assert r.status == "completed", r.error
    return r


def test_ood_numbers_are_the_saved_endpoints_on_the_shifted_sets(compose_cfg, tmp_path, data_dir):
    job = tmp_path / "job"
    r = _run(compose_cfg, job, "logger=wandb")
    assert validate_results(read_json(job / "results.json")) is None
    assert r.ood_names() == list(NAMES)

    # the shifted sets built independently of the run, standardised like its test set
    config = validate(compose_cfg(TINY))
    data = load_data("mnist1d", data_dir, train_size=256, ood=[SHIFTED, FRESH])
    for e in r.endpoints:
        model = load_endpoint(config, data, endpoint_dir(job, e.seed) / "final.pt").eval()
        assert set(e.ood) == set(NAMES)
        for name in NAMES:
            loss, acc = evaluate(model, data.ood[name])
            assert e.ood[name]["loss"] == pytest.approx(loss, abs=1e-5) and e.ood[name]["acc"] == pytest.approx(acc)

    # every path's OOD curve starts and ends at its endpoints' numbers; barriers as for the test split
    for p in r.connectivity:
        for name in NAMES:
            curve = p.ood[name]
            assert len(curve["loss"]) == len(curve["acc"]) == len(p.t) == 5
            for end, i in ((0, 0), (-1, 1)):
                endpoint = r.endpoints[p.pair[i]].ood[name]
                assert curve["loss"][end] == pytest.approx(endpoint["loss"], abs=1e-5), (p.method, name)
                assert curve["acc"][end] == pytest.approx(endpoint["acc"], abs=1e-6), (p.method, name)
            assert curve["loss_barrier"] == barrier(p.t, curve["loss"])
            assert curve["error_barrier"] == barrier(p.t, [1 - a for a in curve["acc"]])

    stats = cell_stats(r)
    for name in NAMES:
        for m in ("loss", "acc", "gap"):
            assert stats[f"ood/{name}/{m}"].n == 3
        for method in ("linear", "linear_aligned"):
            assert stats[f"{method}/ood/{name}/loss_barrier"].n == 3
            assert stats[f"{method}/ood/{name}/error_barrier"].n == 3
    gaps = [e.test_acc - (e.ood["shifted"]["acc"] + e.ood["fresh"]["acc"]) / 2 for e in r.endpoints]
    assert stats["ood_gap"].mean == pytest.approx(sum(gaps) / 3)
    assert stats["ood/shifted/gap"].mean == pytest.approx(
        sum(e.test_acc - e.ood["shifted"]["acc"] for e in r.endpoints) / 3
    )

    names = summary_metrics(r)
    summary = read_run(offline_runs(job)[0])["summary"]
    keys = ["ood/shifted/acc", "ood/fresh/loss", "ood/shifted/gap", "ood_gap", "ood_gap_std", "ood_gap_n"]
    keys += ["landscape/linear/ood/shifted/loss_barrier", "landscape/linear_aligned/ood/fresh/error_barrier"]
    for key in keys:
        assert key in names and summary[key] == pytest.approx(names[key]), key
    assert not any(k.startswith("landscape/ood") or k.startswith("sharpness/ood") for k in summary)

    # re-analysis recomputes them along the new paths, with the same endpoint numbers
    connectivity = {**config["landscape"]["connectivity"], "num_points": 3, "methods": ["linear"]}
    again = reanalyze_cell(job, {**config["landscape"], "connectivity": connectivity})
    assert [len(p.ood["shifted"]["loss"]) for p in again.connectivity] == [3, 3, 3]
    assert [e.ood for e in again.endpoints] == [e.ood for e in r.endpoints]


def test_the_vmap_ensemble_gives_the_ood_numbers_of_none(compose_cfg, tmp_path):
    none = _run(compose_cfg, tmp_path / "none", "logger=none")
    vmap = _run(compose_cfg, tmp_path / "vmap", "logger=none", "endpoints.parallel=vmap")
    for a, b in zip(none.endpoints, vmap.endpoints):
        for name in NAMES:
            assert a.ood[name]["loss"] == pytest.approx(b.ood[name]["loss"], abs=1e-4)
            assert a.ood[name]["acc"] == pytest.approx(b.ood[name]["acc"], abs=2e-3)
    for a, b in zip(none.connectivity, vmap.connectivity):
        assert a.ood["shifted"]["loss"] == pytest.approx(b.ood["shifted"]["loss"], abs=1e-4)


def test_without_ood_sets_nothing_is_added_and_adding_them_later_reuses_the_endpoints(compose_cfg, tmp_path):
    job = tmp_path / "job"
    r = _run(compose_cfg, job, "logger=none", "data.ood=[]", "endpoints.seeds=[0,1]")
    assert r.ood_names() == [] and all(e.ood == {} for e in r.endpoints) and r.connectivity[0].ood is None
    assert not any("ood" in k for k in cell_stats(r))
    weights = endpoint_dir(job, 0) / "final.pt"
    stamp = weights.stat().st_mtime_ns
    again = _run(compose_cfg, job, "logger=none", "endpoints.seeds=[0,1]")  # TINY's two sets: analysis only
    assert weights.stat().st_mtime_ns == stamp and again.ood_names() == list(NAMES)
    assert [e.test_acc for e in again.endpoints] == [e.test_acc for e in r.endpoints]


def test_ood_sets_change_the_cell_not_its_endpoints(compose_cfg):
    base, none = validate(compose_cfg()), validate(compose_cfg(["data.ood=[]"]))
    assert config_hash(base) != config_hash(none)
    assert config_hash(base, training_only=True) == config_hash(none, training_only=True)
    assert list(config_changes(base, none)) == ["data.ood"] and analysis_only("data.ood")

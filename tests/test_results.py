"""results.py: the typed records round-trip, schema 1 files are upgraded, docs/results.md documents every field."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from landscape_sweep.results import (
    BLOCK_MEASURES,
    BLOCK_SUMMARIES,
    OOD_ENDPOINT_MEASURES,
    OOD_PATH_MEASURES,
    PATH_MEASURES,
    SCHEMA,
    SHARPNESS_MEASURES,
    CellResult,
    Endpoint,
    PathEntry,
    cell_stats,
    read_results,
    summarize,
    validate_results,
    write_results,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def test_round_trip_keeps_unknown_fields(tmp_path):
    r = CellResult(status="completed", endpoints=[Endpoint(seed=0, train_acc=0.9, test_acc=0.8)])
    r.connectivity = [PathEntry(pair=[0, 1], method="linear", t=[0.0, 1.0], loss_barrier=0.5, extra={"x": 1})]
    write_results(tmp_path, r)
    back = read_results(tmp_path)
    assert back == r
    assert json.loads((tmp_path / "results.json").read_text())["connectivity"][0]["x"] == 1
    assert "job" not in json.loads((tmp_path / "results.json").read_text())  # transient, report only


def test_schema_1_is_upgraded(tmp_path):
    old = {
        "schema": 1,
        "status": "completed",
        "endpoints": [{"seed": 0, "trajectory": [{"epoch": 2, "hessian_top_eig": 3.0}]}],
        "connectivity": [{"pair": [0, 1], "method": "linear", "t": [0, 1], "loss_barrier": 0.2}],
    }
    (tmp_path / "results.json").write_text(json.dumps(old))
    r = read_results(tmp_path)
    assert r.schema == SCHEMA and r.extra["upgraded_from"] == 1
    assert r.endpoints[0].trajectory == [{"weights": "running", "epoch": 2, "hessian_top_eig": 3.0}]
    assert r.connectivity[0].loss_barrier == 0.2
    with pytest.raises(ValueError, match=r"^schema=99: unknown results schema"):
        CellResult.from_dict({"schema": 99})


def test_summaries():
    s = summarize([1.0, None, float("nan"), 3.0])
    assert (s.mean, s.std, s.n) == (2.0, math.sqrt(2), 2) and s.stderr == pytest.approx(1.0)
    one = summarize([4.0])
    assert one.n == 1 and math.isnan(one.std) and math.isnan(one.stderr)
    r = CellResult(endpoints=[Endpoint(seed=0, train_acc=1.0, test_acc=0.75, sharpness={"hessian_top_eigs": [5.0, 1]})])
    r.connectivity = [PathEntry(pair=[0, 1], method="bezier", sharpness_along_path={"hessian_top_eig": [2.0, 7.0]})]
    stats = cell_stats(r)
    assert stats["gen_gap"].mean == 0.25 and stats["hessian_top_eig"].mean == 5.0
    assert stats["bezier/max_hessian_top_eig_along_path"].mean == 7.0
    assert "test_loss" not in stats  # no finite value: left out


def test_docs_cover_every_field():
    text = DOC.read_text()
    documented = set(re.findall(r"`([a-z_]+)`", text))
    for record in (CellResult, Endpoint, PathEntry):
        fields = {f.name for f in dataclasses.fields(record) if f.name != "extra" and not f.metadata.get("transient")}
        assert fields <= documented, (record.__name__, fields - documented)
    assert set(SHARPNESS_MEASURES) - {"hessian_top_eig"} <= documented
    assert set(PATH_MEASURES) - {"max_hessian_top_eig_along_path"} <= documented
    assert {*OOD_ENDPOINT_MEASURES, *OOD_PATH_MEASURES, "ood_gap"} <= documented


def _ood_cell() -> CellResult:
    ends = [
        Endpoint(seed=0, test_acc=0.8, ood={"a": {"loss": 1.0, "acc": 0.6}, "b": {"loss": 2.0, "acc": 0.4}}),
        Endpoint(seed=1, test_acc=0.7, ood={"a": {"loss": 1.2, "acc": 0.5}, "b": {"loss": 2.2, "acc": None}}),
    ]
    curve = {"loss": [1.0, 3.0, 1.2], "acc": [0.6, 0.2, 0.5], "loss_barrier": 1.9, "error_barrier": 0.35}
    return CellResult(status="completed", endpoints=ends, connectivity=[PathEntry([0, 1], "linear", ood={"a": curve})])


def test_ood_summaries_over_endpoints_and_pairs(tmp_path):
    r = _ood_cell()
    assert r.ood_names() == ["a", "b"]
    stats = cell_stats(r)
    assert stats["ood/a/loss"].mean == pytest.approx(1.1) and stats["ood/a/acc"].mean == pytest.approx(0.55)
    assert stats["ood/a/gap"].mean == pytest.approx(0.2) and stats["ood/b/gap"].n == 1  # a null accuracy is skipped
    assert stats["ood_gap"].mean == pytest.approx(0.8 - 0.5) and stats["ood_gap"].n == 1  # needs every set's acc
    assert stats["linear/ood/a/loss_barrier"].mean == 1.9 and stats["linear/ood/a/error_barrier"].mean == 0.35
    assert "linear/ood/b/loss_barrier" not in stats  # not measured along the path
    assert not any("ood" in k for k in cell_stats(CellResult(endpoints=[Endpoint(seed=0, test_acc=0.5)])))
    write_results(tmp_path, r)
    assert read_results(tmp_path) == r and validate_results(r.to_dict()) is None


@pytest.mark.parametrize(
    "where, value, reason",
    [
        ("endpoint", [1], "endpoints[0].ood: must be an object, got list [1]"),
        ("endpoint", {"a": 0.5}, "endpoints[0].ood.a: must be an object, got float"),
        ("endpoint", {"a": {"acc": "high"}}, 'endpoints[0].ood.a.acc: must be a number or null, got str "high"'),
        ("path", "a", 'connectivity[0].ood: must be an object or null, got str "a"'),
        ("path", {"a": {"loss": 3}}, "connectivity[0].ood.a.loss: must be a list of numbers, got int 3"),
        (
            "path",
            {"a": {"loss_barrier": [1]}},
            "connectivity[0].ood.a.loss_barrier: must be a number or null",
        ),
    ],
)
def test_validate_results_names_a_bad_ood_field(where, value, reason):
    d = _ood_cell().to_dict()
    (d["endpoints"][0] if where == "endpoint" else d["connectivity"][0])["ood"] = value
    assert validate_results(d) is not None and validate_results(d).startswith(reason), validate_results(d)


def _block_cell() -> CellResult:
    def blocks(e1, t1, e2, t2):
        recs = [{"name": "layer1", "n_params": 10, "top_eig": e1, "trace": t1}]
        recs.append({"name": "head", "n_params": 4, "top_eig": e2, "trace": t2})
        conc = {"first_trace_fraction": t1 / (t1 + t2), "last_trace_fraction": t2 / (t1 + t2)}
        return {"blocks": recs, "block_concentration": conc | {"sharpest_position": float(e2 > e1)}}

    ends = [
        Endpoint(seed=0, sharpness=blocks(1.0, 3.0, 4.0, 1.0)),
        Endpoint(seed=1, sharpness=blocks(3.0, 1.0, 2.0, 3.0)),
    ]
    return CellResult(status="completed", endpoints=ends)


def test_block_summaries_over_endpoints(tmp_path):
    r = _block_cell()
    assert r.block_names() == ["layer1", "head"]
    stats = cell_stats(r)
    assert (stats["block/layer1/hessian_top_eig"].mean, stats["block/layer1/hessian_top_eig"].n) == (2.0, 2)
    assert stats["block/layer1/hessian_top_eig"].std == pytest.approx(math.sqrt(2))
    assert stats["block/head/hessian_trace"].mean == 2.0
    assert stats["block/last_trace_fraction"].mean == pytest.approx((0.25 + 0.75) / 2)
    assert stats["block/sharpest_position"].mean == 0.5 and stats["block/sharpest_position"].n == 2
    assert not any(k.startswith("block/") for k in cell_stats(CellResult(endpoints=[Endpoint(seed=0)])))
    write_results(tmp_path, r)
    assert read_results(tmp_path) == r and validate_results(r.to_dict()) is None
    d = r.to_dict()
    d["endpoints"][1]["sharpness"]["blocks"][1]["trace"] = "big"
    assert validate_results(d).startswith("endpoints[1].sharpness.blocks[1].trace: must be a number or null, got str")
    d["endpoints"][1]["sharpness"]["blocks"] = {"head": 1}
    assert validate_results(d).startswith("endpoints[1].sharpness.blocks: must be a list, got dict")


def test_docs_cover_the_block_fields():
    text = DOC.read_text()
    documented = set(re.findall(r"`([a-z_/<>]+)`", text))
    keys = {"blocks", "block_concentration", "name", "n_params", "top_eig", "top_eig_residual", "top_eig_converged"}
    keys |= {"trace", "trace_stderr", "trace_probes", *BLOCK_SUMMARIES}
    assert keys <= documented, keys - documented
    assert {f"block/<block>/{m}" for m in BLOCK_MEASURES} <= documented


PAIRS3 = ([0, 1], [0, 2], [1, 2])


def _additive_cell(u, noise=(0.0, 0.0, 0.0)) -> CellResult:
    """A cell whose linear barrier of pair (i, j) is u_i + u_j (+ a pair's own noise): the pairs share endpoints."""
    paths = [
        PathEntry(pair=list(p), method="linear", loss_barrier=u[p[0]] + u[p[1]] + e) for p, e in zip(PAIRS3, noise)
    ]
    return CellResult(status="completed", endpoints=[Endpoint(seed=k) for k in range(3)], connectivity=paths)


def test_pair_se_is_the_endpoint_jackknife_by_hand():
    """Pair values 1, 2, 4 on (0,1), (0,2), (1,2): leaving out endpoint 0, 1, 2 leaves 4, 2, 1; the jackknife
    variance (2/3)·Σ(U_−i − 7/3)² = 28/9, twice the naive std/√3 = √(21/9)/√3."""
    cell = CellResult(connectivity=[PathEntry(pair=list(p), method="linear", loss_barrier=v)
                                    for p, v in zip(PAIRS3, (1.0, 2.0, 4.0))])  # fmt: skip
    s = cell_stats(cell)["linear/loss_barrier"]
    assert (s.mean, s.n, s.dof) == (pytest.approx(7 / 3), 3, 2)
    assert s.se == pytest.approx(math.sqrt(28 / 9)) and s.se == pytest.approx(2 * s.stderr)
    lo, hi = s.ci95
    assert (lo, hi) == (pytest.approx(7 / 3 - 4.302653 * s.se, rel=1e-6), pytest.approx(7 / 3 + 4.302653 * s.se))
    e = summarize([1.0, 2.0, 4.0])  # endpoints are independent: se = std/√n, n − 1 dof
    assert e.se == pytest.approx(e.std / math.sqrt(3)) and e.dof == 2
    assert math.isnan(summarize([1.0]).se) and summarize([1.0]).ci95[0] != summarize([1.0]).ci95[0]


def test_pair_se_matches_the_sampling_sd_when_pairs_share_endpoints():
    """barrier(i, j) = u_i + u_j, u ~ N(0, 1): the pair mean is 2·mean(u), sd 2/√3 = 1.155 over cells. The naive
    std/√3 over pairs is half of it; the endpoint jackknife matches it and its t interval covers 95 %. With pair
    values that vary independently instead, the jackknife errs on the safe side (never below the true sd)."""
    rng = np.random.default_rng(0)
    means, se2, naive2, cover = [], [], [], 0
    for _ in range(4000):
        s = cell_stats(_additive_cell(rng.normal(0, 1, 3)))["linear/loss_barrier"]
        means.append(s.mean)
        se2.append(s.se**2)
        naive2.append(s.stderr**2)
        lo, hi = s.ci95
        cover += lo <= 0 <= hi
    true_sd = float(np.std(means))
    assert true_sd == pytest.approx(2 / math.sqrt(3), rel=0.05)
    assert math.sqrt(np.mean(naive2)) < 0.55 * true_sd  # today's std/√n: half the true error
    assert math.sqrt(np.mean(se2)) == pytest.approx(true_sd, rel=0.05)
    assert 0.935 <= cover / 4000 <= 0.965
    pair_noise = [cell_stats(_additive_cell(np.zeros(3), rng.normal(0, 1, 3)))["linear/loss_barrier"]
                  for _ in range(2000)]  # fmt: skip
    sd = float(np.std([s.mean for s in pair_noise]))
    assert math.sqrt(np.mean([s.se**2 for s in pair_noise])) >= 0.95 * sd


def test_pair_se_needs_three_endpoints_and_every_leave_one_out():
    two = CellResult(connectivity=[PathEntry(pair=[0, 1], method="linear", loss_barrier=1.0)] * 2)
    assert math.isnan(cell_stats(two)["linear/loss_barrier"].se)
    chain = CellResult(connectivity=[PathEntry(pair=p, method="linear", loss_barrier=v)
                                     for p, v in (([0, 1], 1.0), ([1, 2], 2.0))])  # fmt: skip
    s = cell_stats(chain)["linear/loss_barrier"]
    assert s.n == 2 and math.isnan(s.se) and s.std == pytest.approx(math.sqrt(0.5))  # without 1, no pair is left


def test_max_loss_along_the_path_and_average_case_ratio():
    p = PathEntry(pair=[0, 1], method="linear", train_loss=[0.1, 0.9, 0.2], test_loss=[0.3, 1.5, 0.4])
    assert (p.measure("max_train_loss"), p.measure("max_test_loss")) == (0.9, 1.5)
    assert PathEntry(pair=[0, 1], method="linear", train_loss=[0.1, None]).measure("max_train_loss") is None
    assert {"max_train_loss", "max_test_loss"} <= set(PATH_MEASURES)
    ends = [Endpoint(seed=k, sharpness={"average_case_ratio": v}) for k, v in enumerate((1.2, 1.4))]
    stats = cell_stats(CellResult(endpoints=ends + [Endpoint(seed=2)]))  # an older record without it: skipped
    assert stats["average_case_ratio"].mean == pytest.approx(1.3) and stats["average_case_ratio"].n == 2
    bad = CellResult(endpoints=[Endpoint(seed=0, sharpness={"average_case_ratio": "x"})]).to_dict()
    assert validate_results({**bad, "status": "completed"}).startswith("endpoints[0].sharpness.average_case_ratio")


def test_ood_gap_leaves_control_sets_out():
    """A control set (drawn without a shift) measures the sampling noise of an OOD gap; averaging it into `ood_gap`
    would halve the gap of the shifted set."""
    e = Endpoint(seed=0, test_acc=0.72, ood={"noisy": {"acc": 0.5}, "control": {"acc": 0.7, "control": True}})
    assert e.measure("ood_gap") == pytest.approx(0.22)
    assert e.measure("ood/control/gap") == pytest.approx(0.02) and e.measure("ood/noisy/gap") == pytest.approx(0.22)

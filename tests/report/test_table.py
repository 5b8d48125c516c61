"""sweep_results.csv: one row per job dir, means/stds computed by hand from the synthetic sweep (conftest)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from landscape_sweep.report import load_results, sweep_table, write_table
from landscape_sweep.report.table import CACHE_VERSION, mean_std
from landscape_sweep.results import validate_results
from tests._support.sweep import INVALID, add_invalid, completed

S1 = 1.0  # sample std of (-1, 0, 1)


@pytest.fixture
def table(sweep) -> pd.DataFrame:
    path, _ = write_table(sweep)
    assert path == sweep / "sweep_results.csv"
    return pd.read_csv(path)


def test_rows_status_and_errors(table):
    assert list(table["job"]) == list(range(11))
    assert list(table["status"]) == ["completed"] * 8 + ["failed", "diverged", "missing"]
    assert table.loc[8, "error"] == "RuntimeError: out of memory"
    assert table.loc[9, "error"] == "non-finite training loss at epoch 3 (seed 0)"
    assert table.loc[10, "error"] == "no results.json (job killed, timed out or still running)"
    assert table.loc[10, "overrides"] == "model.depth=8 optimizer=sgd trainer.max_epochs=30"
    assert (
        table.loc[9, "overrides"] == "model.depth=4 model.width=64 optimizer=sam optimizer.lr=10 trainer.max_epochs=30"
    )
    assert list(table.columns[:4]) == ["job", "status", "error", "overrides"]
    assert list(table.loc[:7, "optimizer"]) == ["sgd"] * 4 + ["sam"] * 4
    assert list(table.loc[:3, "num_params"]) == [800, 3200, 1056, 7296]


def test_columns(table):
    cols = set(table.columns)
    for stem in ("train_acc", "test_acc", "gen_gap", "hessian_top_eig", "hessian_trace", "worst_case", "average_case"):
        assert {f"{stem}_mean", f"{stem}_std"} <= cols
    for m in ("linear", "linear_aligned"):
        assert f"{m}/num_pairs" in cols
        for k in ("loss_barrier", "error_barrier", "test_loss_barrier", "test_error_barrier", "path_length"):
            assert {f"{m}/{k}_mean", f"{m}/{k}_std"} <= cols
    assert not any(c.startswith(("bezier/", "polychain/")) for c in cols)  # only methods present in the sweep


def test_values_by_hand(table):
    r = table.loc[0]  # sgd, depth 1, width 16: gap 0.10, X 1
    assert r["num_endpoints"] == 3
    assert r["train_acc_mean"] == pytest.approx(0.99) and r["train_acc_std"] == pytest.approx(0.01 * S1)
    assert r["test_acc_mean"] == pytest.approx(0.89) and r["test_acc_std"] == pytest.approx(0.0, abs=1e-12)
    assert r["gen_gap_mean"] == pytest.approx(0.10) and r["gen_gap_std"] == pytest.approx(0.01 * S1)
    assert r["hessian_top_eig_mean"] == pytest.approx(1.0) and r["hessian_top_eig_std"] == pytest.approx(0.5 * S1)
    assert r["hessian_trace_mean"] == pytest.approx(101.0) and r["hessian_trace_std"] == 0.0
    assert r["worst_case_mean"] == pytest.approx(0.3) and r["worst_case_std"] == pytest.approx(
        0.1 * math.sqrt(2)
    )  # None skipped
    assert r["worst_case_n"] == 2 and r["train_acc_n"] == 3 and r["linear/loss_barrier_n"] == 3
    assert math.isnan(r["average_case_mean"]) and math.isnan(r["adaptive_worst_case_mean"])
    assert r["linear/num_pairs"] == 3
    # the error of a pair mean: the endpoint jackknife (pairs share endpoints), twice std/√3 here; 95 % t interval
    assert r["linear/loss_barrier_se"] == pytest.approx(0.2 / math.sqrt(3)) and r["linear/loss_barrier_dof"] == 2
    assert r["linear/loss_barrier_ci95_hi"] == pytest.approx(1.0 + 4.302653 * 0.2 / math.sqrt(3), rel=1e-6)
    assert r["train_acc_se"] == pytest.approx(0.01 / math.sqrt(3)) and r["train_acc_dof"] == 2  # endpoints: std/√n
    assert math.isnan(r["stop_reached"])  # no trainer.stop_at
    assert r["linear/loss_barrier_mean"] == pytest.approx(1.0)
    assert r["linear/loss_barrier_std"] == pytest.approx(0.1 * S1)
    assert r["linear_aligned/loss_barrier_mean"] == pytest.approx(0.05) and r["linear_aligned/loss_barrier_std"] == 0
    assert r["linear/path_length_mean"] == pytest.approx(10 / 3)
    assert r["linear/path_length_std"] == pytest.approx(math.sqrt(3) / 3)
    assert math.isnan(r["linear/error_barrier_mean"])
    assert (r["train_time_s"], r["analysis_time_s"], r["total_time_s"]) == (1.0, 2.0, 3.0)
    assert table.loc[7, "gen_gap_mean"] == pytest.approx(0.17)
    assert table.loc[7, "hessian_top_eig_mean"] == pytest.approx(7.0)
    d = table.loc[9]  # diverged: what it has is kept, non-finite (null) values are NaN
    assert d["train_acc_mean"] == 0.1 and d["gen_gap_mean"] == 0.0 and math.isnan(d["train_loss_mean"])
    assert d["linear/num_pairs"] == 0 and math.isnan(d["linear/loss_barrier_mean"])


def test_mean_std_skips_non_finite():
    assert mean_std([1.0, None, float("nan"), 3.0]) == (2.0, math.sqrt(2))
    assert mean_std([0.05] * 3) == (0.05, 0.0)
    m, s = mean_std([None])
    assert math.isnan(m) and math.isnan(s)
    m, s = mean_std([0.5])  # one value: no spread
    assert m == 0.5 and math.isnan(s)


def test_no_connectivity_has_no_method_columns(tmp_path):
    from tests._support.sweep import make_sweep

    t = sweep_table(load_results(make_sweep(tmp_path / "s", connectivity=False)))
    assert len(t) == 11 and not any("/" in c for c in t.columns)


def test_invalid_results_are_rows_with_their_reason(sweep):
    """A truncated file, another schema and a field of the wrong type: `invalid` rows with the reason; the rest
    of the table is what it was."""
    before = sweep_table(load_results(sweep))
    after = sweep_table(load_results(add_invalid(sweep)))
    assert list(after["status"][11:]) == ["invalid"] * 3
    assert list(after["error"][11:]) == [reason for _, reason in INVALID.values()]
    assert list(after["overrides"][11:]) == ["seed=11 trainer.max_epochs=30", "seed=12 trainer.max_epochs=30",
                                             "seed=13 trainer.max_epochs=30"]  # fmt: skip
    pd.testing.assert_frame_equal(after.iloc[:11][before.columns], before)


def test_missing_only_when_absent(sweep):
    (sweep / "0" / "results.json").write_text("")  # present but empty: invalid, not missing
    (sweep / "1" / "results.json").unlink()
    r0, r1 = load_results(sweep)[:2]
    assert (r0.status, r0.error) == ("invalid", "not valid JSON: Expecting value at line 1 column 1")
    assert (r1.status, r1.error) == ("missing", "no results.json (job killed, timed out or still running)")


@pytest.mark.parametrize(
    "patch, reason",
    [
        ({"schema": "2"}, "schema='2': unknown results schema; this version reads 1 and 2"),
        ({"status": "done"}, "status='done': must be one of completed, failed, diverged"),
        ({"error": 3}, "error: must be a string or null, got int 3"),
        ({"cell": []}, "cell: must be an object, got list []"),
        ({"timing_s": {"train": "1 s"}}, 'timing_s.train: must be a number or null, got str "1 s"'),
        ({"endpoints": [{"train_acc": 0.9}]}, "endpoints[0].seed: missing"),
        ({"endpoints": [{"seed": 0, "test_acc": "0.9"}]},
         'endpoints[0].test_acc: must be a number or null, got str "0.9"'),
        ({"endpoints": [{"seed": 0, "sharpness": {"hessian_top_eigs": [1, "x"]}}]},
         'endpoints[0].sharpness.hessian_top_eigs: must be a list of numbers, got list [1, "x"]'),
        ({"connectivity": [{"pair": [0, 1], "method": "linear", "loss_barrier": True}]},
         "connectivity[0].loss_barrier: must be a number or null, got bool true"),
        ({"connectivity": [7]}, "connectivity[0]: must be an object, got int"),
    ],
)  # fmt: skip
def test_validate_results_names_the_field(patch, reason):
    good = completed(1, 16, "sgd")
    assert validate_results(good) is None and validate_results({**good, "schema": 2}) is None
    assert validate_results({**good, **patch}) == reason
    assert validate_results([good]) == "must be a JSON object, got list"


def test_results_cache_rereads_only_changed_files(sweep):
    """The second read comes from `.report_cache.jsonl`; a changed results.json is read again; a corrupt cache is
    ignored and rewritten."""
    from landscape_sweep.report.table import ResultsCache

    first = load_results(sweep)
    cache = sweep / ResultsCache.NAME
    assert cache.is_file()
    path = sweep / "0" / "results.json"
    d = json.loads(path.read_text())
    d["endpoints"][0]["test_acc"] = 0.123
    path.write_text(json.dumps(d))
    again = {r.job: r for r in load_results(sweep)}
    assert again["0"].endpoints[0].test_acc == 0.123  # re-read: its mtime and size changed
    assert [r.to_dict() for r in first if r.job != "0"] == [again[r.job].to_dict() for r in first if r.job != "0"]
    cache.write_bytes(b"not a cache")
    assert [r.job for r in load_results(sweep)] == [r.job for r in first]
    assert json.loads(cache.read_text().splitlines()[0]) == {"version": list(CACHE_VERSION)}  # rewritten
    assert [r.job for r in load_results(sweep, cache=False)] == [r.job for r in first]


def test_a_cell_of_the_manifest_that_never_started_is_a_missing_row(tmp_path):
    """A SLURM job cancelled or failed in the queue leaves no job dir: the manifest's cell is still a `missing` row
    (with its overrides and job id) instead of vanishing from the report."""
    from landscape_sweep.manifest import record_submission, start_sweep

    cells = [["model.depth=1"], ["model.depth=2"]]
    start_sweep(tmp_path, cells, argv=["-m"], cwd=str(tmp_path), python="python", launcher="x", detach=True)
    record_submission(tmp_path, {0: "7_0", 1: "7_1"}, {}, array="7", report_job=None)
    (tmp_path / "0" / ".hydra").mkdir(parents=True)  # cell 0 started (and is still running: no results.json)
    rows = {r.job: r for r in load_results(tmp_path, cache=False)}
    assert sorted(rows) == ["0", "1"]
    assert rows["0"].status == rows["1"].status == "missing"
    assert rows["1"].error.startswith("never started") and "(job 7_1)" in rows["1"].error
    assert rows["1"].extra["overrides"] == "model.depth=2"
    assert list(sweep_table(list(rows.values()))["job"]) == ["0", "1"]


class _Payload:
    """A pickle that, when loaded, writes a marker file: what a crafted cache in a shared sweep dir could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return Path.write_text, (Path(self.marker), "code ran")


@pytest.mark.parametrize("name", [".report_cache.pkl", ".report_cache.jsonl"])
def test_a_crafted_results_cache_runs_nothing_and_is_rebuilt(sweep, tmp_path, name):
    import pickle

    from landscape_sweep.report.table import ResultsCache

    expected = [r.to_dict() for r in load_results(sweep, cache=False)]
    marker = tmp_path / "marker"
    (sweep / name).write_bytes(pickle.dumps({"version": (2, 1), "entries": _Payload(marker)}))
    assert [r.to_dict() for r in load_results(sweep)] == expected
    assert not marker.exists(), "loading the results cache ran code"
    assert [r.to_dict() for r in load_results(sweep)] == expected  # the rebuilt cache
    assert json.loads((sweep / ResultsCache.NAME).read_text().splitlines()[0])["version"]  # JSON lines, not a pickle
    assert not marker.exists()


def test_cached_records_are_validated_like_the_files(sweep):
    """A cache entry whose record the validator rejects (here: schema 99, matching the file's mtime and size) is not
    trusted: the file is read again, so the report shows what results.json holds."""
    from landscape_sweep.report.table import ResultsCache

    expected = {r.job: r.to_dict() for r in load_results(sweep)}
    path = sweep / ResultsCache.NAME
    lines = path.read_text().splitlines()
    tampered = [lines[0]]
    for line in lines[1:]:
        entry = json.loads(line)
        if entry["job"] == "0":
            entry["parsed"] = {**entry["parsed"], "schema": 99}
        elif entry["job"] == "1":
            entry["parsed"]["endpoints"][0]["test_acc"] = "high"
        tampered.append(json.dumps(entry))
    path.write_text("\n".join(tampered) + "\n")
    got = {r.job: r.to_dict() for r in load_results(sweep)}
    assert got == expected
    assert got["0"]["status"] == "completed" and got["1"]["endpoints"][0]["test_acc"] != "high"


def test_a_results_cache_that_is_a_link_or_a_fifo_is_not_read(sweep, tmp_path):
    """The cache is opened without following links and read only when it is a regular file (a FIFO would block
    the report forever); the rebuilt cache replaces the link, never writes through it."""
    import os

    from landscape_sweep.report.table import ResultsCache

    expected = [r.to_dict() for r in load_results(sweep, cache=False)]
    cache = sweep / ResultsCache.NAME
    target = tmp_path / "elsewhere"
    target.write_text("keep me\n")
    cache.symlink_to(target)
    assert [r.to_dict() for r in load_results(sweep)] == expected
    assert target.read_text() == "keep me\n" and not cache.is_symlink()
    cache.unlink()
    os.mkfifo(cache)
    assert [r.to_dict() for r in load_results(sweep)] == expected
    assert cache.is_file()

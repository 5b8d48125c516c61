"""The paired optimizer comparison: cells that differ only in the optimizer, endpoints paired by seed, paths by
their endpoints' seeds; values computed by hand from the synthetic sweep (tests/_support/sweep.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import t as t_dist

from landscape_sweep.report import load_results, sweep_table
from landscape_sweep.report.paired import baseline_of, cell_pairs, paired_differences, paired_table
from landscape_sweep.results import CellResult, Endpoint, PathEntry
from tests._support.sweep import X


@pytest.fixture
def paired(sweep) -> pd.DataFrame:
    results = load_results(sweep)
    return paired_table(results, sweep_table(results), ["linear", "linear_aligned"]).set_index("measure")


def test_cells_that_differ_only_in_the_optimizer_are_paired(sweep):
    table = sweep_table(load_results(sweep))
    assert baseline_of(table["optimizer"]) == "sgd" and baseline_of(["sam", "asam"]) == "asam"
    assert baseline_of(["sgd"]) is None
    # jobs 0-3: sgd at (depth, width) (1,16) (1,64) (2,16) (2,64); jobs 4-7: sam at the same; failed 8, diverged 9
    assert sorted(cell_pairs(table, "sgd")) == [("0", "4", "sam"), ("1", "5", "sam"), ("2", "6", "sam"),
                                                ("3", "7", "sam")]  # fmt: skip


def test_paired_differences_by_hand(paired):
    """sam − sgd: the gap is 0.01 higher in every cell (test acc 0.01 lower: 12 of 12 endpoints lower, the interval
    has no width); the linear barrier 10x the gap, 0.1 higher on every path; the top eigenvalue differs by X:
    2, 1, 2, 7 per cell pair, mean 3 with a t interval over the 4 cell pairs."""
    acc = paired.loc["test_acc"]
    assert acc["mean_diff"] == pytest.approx(-0.01) and (acc["lower"], acc["n"], acc["cell_pairs"]) == (12, 12, 4)
    assert acc["ci95_hi"] - acc["ci95_lo"] == pytest.approx(0, abs=1e-12) and acc["ci"] == "t over cell pairs"
    gap = paired.loc["gen_gap"]
    assert gap["mean_diff"] == pytest.approx(0.01) and gap["lower"] == 0 and gap["cell_pairs_lower"] == 0
    bar = paired.loc["linear/loss_barrier"]
    assert bar["mean_diff"] == pytest.approx(0.1) and (bar["lower"], bar["n"]) == (0, 12)
    eig = paired.loc["hessian_top_eig"]
    diffs = [X[(d, w, 1)] - X[(d, w, 0)] for d in (0, 1) for w in (0, 1)]
    assert sorted(diffs) == [1, 2, 2, 7]
    se = pd.Series(diffs).std() / 2
    assert eig["mean_diff"] == pytest.approx(3.0) and eig["se"] == pytest.approx(se) and eig["dof"] == 3
    assert eig["ci95_lo"] == pytest.approx(3.0 - t_dist.ppf(0.975, 3) * se)
    assert paired.loc["linear_aligned/loss_barrier", "mean_diff"] == pytest.approx(0.0)
    assert "average_case" not in paired.index  # no value anywhere: no row


def _cell(job: str, opt: str, accs: list[float], barriers: dict[tuple[int, int], float], seeds=(0, 1, 2)):
    ends = [Endpoint(seed=s, train_acc=1.0, test_acc=a) for s, a in zip(seeds, accs)]
    paths = [PathEntry(pair=list(p), method="linear", loss_barrier=v) for p, v in barriers.items()]
    r = CellResult(status="completed", cell={"depth": 2, "width": 64, "optimizer": opt}, endpoints=ends,
                   connectivity=paths, job=job)  # fmt: skip
    return r


def test_one_cell_pair_uses_the_cell_itself():
    """A single cell pair: t over the seed differences for endpoint measures, the jackknife over seeds for paths
    (pairs share endpoints). Endpoints are matched by seed, not by position; paths by their endpoints' seeds."""
    base = _cell("0", "sgd", [0.80, 0.82, 0.84], {(0, 1): 1.0, (0, 2): 1.2, (1, 2): 1.4})
    # the other cell lists its endpoints in another order: index 0 is seed 2
    other = _cell("1", "sam", [0.87, 0.81, 0.85], {(1, 2): 0.9, (0, 2): 1.3, (0, 1): 1.0}, seeds=(2, 0, 1))
    units, d = paired_differences(base, other, "test_acc")
    assert dict(zip(units, d)) == pytest.approx({2: 0.03, 0: 0.01, 1: 0.03})
    units, d = paired_differences(base, other, "linear/loss_barrier")
    # other's pair (1,2) = seeds (0,1); (0,2) = seeds (2,1); (0,1) = seeds (2,0)
    assert dict(zip(units, d)) == pytest.approx({(0, 1): 0.9 - 1.0, (1, 2): 1.3 - 1.4, (0, 2): 1.0 - 1.2})
    table = pd.DataFrame([{"job": r.job, "status": "completed", **r.cell} for r in (base, other)])
    out = paired_table([base, other], table, ["linear"]).set_index("measure")
    acc = out.loc["test_acc"]
    assert acc["ci"] == "t over seeds (one cell pair)" and acc["dof"] == 2
    assert acc["se"] == pytest.approx(pd.Series([0.03, 0.01, 0.03]).std() / math.sqrt(3))
    bar = out.loc["linear/loss_barrier"]
    assert bar["ci"] == "jackknife over seeds (one cell pair)" and bar["lower"] == 3 and bar["n"] == 3
    # leave out seed 0, 1, 2: the remaining pair's difference -0.1, -0.2, -0.1; (2/3)·Σ(U − mean)²
    loo = [-0.1, -0.2, -0.1]
    m = sum(loo) / 3
    assert bar["se"] == pytest.approx(math.sqrt(2 / 3 * sum((v - m) ** 2 for v in loo)))


def test_only_cells_that_agree_on_every_other_hyperparameter():
    """Two learning rates: sgd at lr 0.1 pairs with sam at lr 0.1 only. An optimizer setting with one value per
    optimizer (rho) belongs to the optimizer; a cell field never does (sgd only at depth 1, sam only at depth 2:
    no pair)."""
    rows = [
        {"job": "0", "optimizer": "sgd", "depth": 1, "cfg:optimizer.lr": 0.1, "cfg:optimizer.rho": 0.0},
        {"job": "1", "optimizer": "sgd", "depth": 1, "cfg:optimizer.lr": 0.2, "cfg:optimizer.rho": 0.0},
        {"job": "2", "optimizer": "sam", "depth": 1, "cfg:optimizer.lr": 0.1, "cfg:optimizer.rho": 0.05},
        {"job": "3", "optimizer": "sam", "depth": 1, "cfg:optimizer.lr": 0.2, "cfg:optimizer.rho": 0.05},
    ]
    table = pd.DataFrame(rows).assign(status="completed")
    assert sorted(cell_pairs(table, "sgd")) == [("0", "2", "sam"), ("1", "3", "sam")]
    apart = pd.DataFrame([{"job": "0", "optimizer": "sgd", "depth": 1}, {"job": "1", "optimizer": "sam", "depth": 2}])
    assert cell_pairs(apart.assign(status="completed"), "sgd") == []


def test_report_has_the_paired_section_and_csv(built):
    root, paths = built
    csv = pd.read_csv(paths["paired_optimizer"])
    assert paths["paired_optimizer"] == str(root / "paired_optimizer.csv")
    assert set(csv["optimizer"]) == {"sam"} and set(csv["baseline"]) == {"sgd"}
    text = Path(paths["report"]).read_text()
    sec = text.split("## Optimizers compared (paired)\n", 1)[1].split("\n## ", 1)[0]
    assert "**sam − sgd** (95 % CI: t over cell pairs)" in sec
    assert "| test_acc | -0.01 [-0.01, -0.01] | 12 of 12 | 4 of 4 |" in sec
    assert "| hessian_top_eig | +3 [-1.31, +7.31] | 0 of 12 | 0 of 4 |" in sec

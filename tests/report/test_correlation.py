"""Kendall τ overall and granulated (Jiang et al. 2020) against hand-computed values on the synthetic sweep."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from landscape_sweep.report import correlation_table, granulated_tau, kendall, load_results, sweep_table
from landscape_sweep.report.correlation import kendall_test


@pytest.fixture
def table(sweep) -> pd.DataFrame:
    return sweep_table(load_results(sweep))


def test_kendall_nan_safe_and_min_n():
    assert kendall([1, 2, float("nan"), 3], [1, 2, 5, 3]) == (1.0, 3)
    tau, n = kendall([1, 2], [2, 1])
    assert math.isnan(tau) and n == 2
    assert kendall([1, 2], [2, 1], min_n=2) == (-1.0, 2)
    assert math.isnan(kendall([1, 1, 1], [1, 2, 3])[0])  # a constant measure has no ranking
    # one discordant pair of 6
    assert kendall([1, 2, 4, 3], [1, 2, 3, 4])[0] == pytest.approx(4 / 6)


def test_overall_and_granulated_tau(table):
    tau = correlation_table(table).set_index("measure")
    assert list(tau.columns) == [
        "n", "tau", "p", "psi[depth]", "groups[depth]", "psi[width]", "groups[width]",
        "psi[optimizer]", "groups[optimizer]", "Psi",
    ]  # fmt: skip
    eig = tau.loc["hessian_top_eig"]  # gap order 000..111 gives X = 1,3,2,4,5,6,0,7: 7 of 28 pairs discordant
    assert eig["n"] == 8 and eig["tau"] == pytest.approx((21 - 7) / 28)
    assert eig["p"] == pytest.approx(kendalltau([1, 3, 2, 4, 5, 6, 0, 7], range(8)).pvalue)  # n = 8: scipy's exact
    assert eig["psi[depth]"] == pytest.approx(0.5) and eig["groups[depth]"] == 4
    assert eig["psi[width]"] == pytest.approx(0.5) and eig["groups[width]"] == 4
    assert eig["psi[optimizer]"] == pytest.approx(1.0) and eig["groups[optimizer]"] == 4
    assert eig["Psi"] == pytest.approx(2 / 3)
    lin = tau.loc["linear/loss_barrier"]
    assert lin["tau"] == pytest.approx(1.0) and lin["Psi"] == pytest.approx(1.0)
    aligned = tau.loc["linear_aligned/loss_barrier"]  # constant: n/a everywhere
    assert math.isnan(aligned["tau"]) and math.isnan(aligned["Psi"]) and aligned["groups[depth]"] == 0
    assert "linear/error_barrier" not in tau.index  # no value anywhere
    assert "average_case" not in tau.index


def test_granulated_tau_constructed_case(table):
    # without job 3 (sgd, depth 2, width 64; X = 0) every remaining group of two agrees with the gap
    t = table[table["job"] != "3"]
    for hp in ("depth", "width", "optimizer"):
        assert granulated_tau(t, "hessian_top_eig_mean", hp) == (pytest.approx(1.0), 3)
    # a group whose gap ties has no τ and is left out of the mean
    t = table.copy()
    t.loc[t["job"] == "4", "gen_gap_mean"] = t.loc[t["job"] == "0", "gen_gap_mean"].item()  # sgd/sam d1 w16 tie
    assert granulated_tau(t, "hessian_top_eig_mean", "optimizer") == (pytest.approx(1.0), 3)
    # failed/diverged cells never enter: their values are ignored even when present
    t = table.copy()
    t.loc[t["status"] == "diverged", "hessian_top_eig_mean"] = -100.0
    assert correlation_table(t).set_index("measure").loc["hessian_top_eig", "n"] == 8


def test_only_varied_hyperparameters(table):
    t = table[table["optimizer"] == "sgd"]
    tau = correlation_table(t)
    assert not any("optimizer" in c for c in tau.columns)
    eig = tau.set_index("measure").loc["hessian_top_eig"]  # sgd: X = 1,2,5,0 along gap order
    assert eig["tau"] == pytest.approx((3 - 3) / 6)
    assert eig["psi[depth]"] == pytest.approx(0.0)  # (w16: 1->5 +1), (w64: 2->0 -1)


def test_granulated_tau_holds_config_hyperparameters_fixed():
    """Cells that differ in a config value (lr) that is not a cell field are never pooled: within each lr the
    measure ranks the widths like the gap (psi width = +1), pooled across lrs it would not (tau < 0)."""
    import pandas as pd

    rows = []
    for wi, width in enumerate((16, 64)):
        for li, lr in enumerate((0.1, 0.01)):
            rows.append(
                {"status": "completed", "depth": 2, "width": width, "optimizer": "sgd", "cfg:optimizer.lr": lr,
                 "cfg:model.width": width, "m_mean": wi - 10 * li, "gen_gap_mean": wi + 10 * li}
            )  # fmt: skip
    table = pd.DataFrame(rows)
    from landscape_sweep.report.correlation import varied

    assert varied(table) == ["width", "cfg:optimizer.lr"]  # model.width splits the cells like width: same hp
    assert kendall(table["m_mean"], table["gen_gap_mean"], min_n=2)[0] < 0
    assert granulated_tau(table, "m_mean", "width") == (1.0, 2)
    assert granulated_tau(table, "m_mean", "cfg:optimizer.lr") == (-1.0, 2)


def test_kendall_p_value_is_exact_for_few_points():
    """Over 3 depths τ is ±1 or ±1/3 only, and τ = 1 has p = 2/6 (2 of the 6 orderings reach |τ| = 1): a perfect
    rank agreement over 3 points is no evidence. Without ties the enumeration equals scipy's exact test; with ties
    it is the share of orderings of y reaching |τ_b|, counted here by brute force."""
    assert kendall_test([1, 2, 4], [0.3, 0.2, 0.1]) == (-1.0, 3, pytest.approx(1 / 3))
    assert kendall_test([1, 2, 4], [0.1, 0.3, 0.2])[1:] == (3, 1.0)  # τ = 1/3: every ordering reaches it
    rng = np.random.default_rng(1)
    for n in (4, 5, 6, 7):
        x, y = rng.permutation(n).astype(float), np.arange(n, dtype=float)
        assert kendall_test(x, y)[2] == pytest.approx(kendalltau(x, y, method="exact").pvalue)
    x, y = np.array([1.0, 2, 3, 4, 5]), np.array([1.0, 1, 2, 3, 3])  # ties in y
    perms = [kendall(x, np.array(q))[0] for q in itertools.permutations(y)]
    tau, _, p = kendall_test(x, y)
    assert p == pytest.approx(np.mean([abs(t) >= abs(tau) - 1e-12 for t in perms]))
    assert math.isnan(kendall_test([1, 2], [2, 1])[2])  # too few points: no τ, no p

"""Trends along width and depth on constructed data with known answers: power-law fits, plateaus, the table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as t_dist

from landscape_sweep.report.trends import fit_power_law, plateau, theory_reference, trend_table

W = np.array([16, 32, 64, 128, 256, 512], dtype=float)


@pytest.mark.parametrize(("a", "b", "c"), [(3.0, 0.5, 0.0), (2.0, 1.0, 0.7), (-1.5, 0.3, 0.9), (0.02, -0.5, 1.0)])
def test_exact_power_law_recovered(a, b, c):
    y = a * W ** (-b) + c
    for yerr in (None, np.full(len(W), 0.01)):
        p = fit_power_law(W, y, yerr)
        assert p.converged and p.reason == "" and (p.n, p.dof) == (6, 3) and p.weighted == (yerr is not None)
        assert (p.a, p.b, p.c) == (pytest.approx(a, rel=1e-7), pytest.approx(b, rel=1e-7), pytest.approx(c, abs=1e-9))
        if yerr is None:  # exact data: the residual scale, hence the stderr, is ~0
            assert p.b_stderr < 1e-6 and p.chi2_red < 1e-20


def test_noisy_fit_stderr_is_honest_and_shrinks_with_points():
    a, b, c, sigma = 3.0, 0.5, 0.1, 0.01
    rng = np.random.default_rng(0)
    inside, inside95 = 0, 0
    for _ in range(100):
        p = fit_power_law(W, a * W ** (-b) + c + rng.normal(0, sigma, len(W)), np.full(len(W), sigma))
        assert p.converged
        inside += abs(p.b - b) <= p.b_stderr
        lo, hi = p.b_ci95
        inside95 += lo <= b <= hi
    assert 55 <= inside <= 80 and 88 <= inside95 <= 99  # ≈ 68 % and 95 % coverage
    few, many = (np.geomspace(16, 512, k) for k in (5, 40))
    se = [fit_power_law(x, a * x ** (-b) + c + rng.normal(0, sigma, len(x))).b_stderr for x in (few, many)]
    assert se[1] < se[0] / 2


def test_fit_not_identifiable_or_degenerate():
    y = 3 * W**-0.5
    few = fit_power_law([16, 16, 32, 32, 64, 64], [1, 1.1, 0.8, 0.8, 0.6, 0.7])
    assert not few.converged and few.reason == "needs >= 4 widths" and math.isnan(few.b) and math.isnan(few.b_stderr)
    assert math.isnan(few.b_ci95[0])
    # NaN values and x <= 0 are dropped before counting widths
    nan = fit_power_law([0, 16, 32, 64, 128], [9, 1, float("nan"), 0.5, 0.4])
    assert not nan.converged and nan.reason == "needs >= 4 widths" and nan.n == 3
    flat = fit_power_law(W, np.full(len(W), 0.3))
    assert not flat.converged and flat.reason.startswith("singular covariance") and math.isnan(flat.b_stderr)
    assert flat.c == pytest.approx(0.3)
    steep = fit_power_law(W, (W / 16) ** -8.0 + 1)  # beyond b's range: the best b sits on the bound
    assert not steep.converged and steep.reason == "b at its bound 5" and steep.b == pytest.approx(5)
    partly = fit_power_law(W, y, [0.01, 0, 0.01, 0.01, 0.01, 0.01])  # a zero yerr: unweighted
    assert partly.converged and not partly.weighted and partly.b == pytest.approx(0.5)


def test_plateau_step_still_improving_and_flat():
    x = [16, 32, 64, 128, 256]
    step = plateau(x, [2.0, 1.5, 1.0, 0.98, 1.01], [0.05] * 5, higher_is_better=False)
    assert step.reached and step.at == 64 and step.value == 1.0 and step.label == "plateau at 64" and step.n == 5
    going = plateau(x, [2.0, 1.5, 1.0, 0.5, 0.1], [0.05] * 5, higher_is_better=False)
    assert not going.reached and math.isnan(going.at) and going.label == "still improving"
    assert going.reason == "still improving at the largest x"
    flat = plateau(x, [1.0, 1.01, 0.99, 1.0, 1.0], [0.02] * 5, higher_is_better=False)
    assert flat.reached and flat.at == 16 and flat.label == "no trend within spread"
    # steps of 0.03 each hide in a spread of 0.05, but two of them do not: compared with every larger x
    slow = plateau(x, [1.0, 0.97, 0.94, 0.91, 0.88], [0.05] * 5, higher_is_better=False)
    assert slow.at == 128
    # the larger spread of the two points is the threshold
    assert plateau(x, [1.0, 0.9, 0.9, 0.9, 0.9], [0.0, 0.2, 0.2, 0.2, 0.2], higher_is_better=False).at == 16
    assert plateau(x, [1.0, 0.9, 0.9, 0.9, 0.9], [0.0, 0.2, 0.0, 0.0, 0.0], higher_is_better=False).at == 32


def test_plateau_direction_order_and_missing_spread():
    x = [64, 16, 32, 128]  # unsorted input is sorted
    acc = [0.70, 0.50, 0.60, 0.71]
    up = plateau(x, acc, [0.02] * 4, higher_is_better=True)
    assert up.at == 64 and up.value == 0.70
    down = plateau(x, acc, [0.02] * 4, higher_is_better=False)  # read as a loss, the rise is no improvement
    assert down.at == 16 and down.value == 0.50 and down.label == "worsens"
    nan = plateau([16, 32], [1.0, 0.99], [float("nan")] * 2, higher_is_better=False)  # NaN spread counts as 0
    assert nan.spread_missing and not nan.reached
    assert plateau([16, 32], [1.0, 0.99], [0.02, float("nan")], higher_is_better=False).at == 16
    one = plateau([16], [1.0], [0.1], higher_is_better=False)
    assert not one.reached and one.label == "n/a" and one.reason == "needs >= 2 points"


def test_theory_reference_anchored_at_smallest_width():
    ref = theory_reference([64, 16, 256], 2.0)
    assert ref == pytest.approx([1.0, 2.0, 0.5])


def synthetic_table() -> pd.DataFrame:
    """2 optimizers x 2 depths x 2 lrs x 6 widths (enough for a·w^-b + c): barrier = A·w^-b + C with b = 0.5 at
    lr 0.1, 1.0 at lr 0.05 (pooling the lrs would break the exact fit); test_acc plateaus at width 64 for sgd and
    still climbs for sam. Two failed cells carry absurd values that must be ignored."""
    rows = []
    widths = (16, 32, 64, 128, 256, 512)
    for oi, opt in enumerate(("sgd", "sam")):
        for depth in (1, 2):
            for lr, b in ((0.1, 0.5), (0.05, 1.0)):
                for wi, w in enumerate(widths):
                    acc = (0.5, 0.6, 0.7, 0.7, 0.7, 0.7)[wi] if opt == "sgd" else 0.5 + 0.05 * wi
                    rows.append(
                        {
                            "job": str(len(rows)), "status": "completed", "depth": depth, "width": w,
                            "optimizer": opt, "cfg:optimizer.lr": lr, "cfg:model.width": w,
                            "cfg:trainer.max_epochs": 30,
                            "linear/loss_barrier_mean": (1 + oi + depth) * w**-b + 0.1 * depth,
                            "linear/loss_barrier_std": 0.001, "linear/loss_barrier_n": 3,
                            "test_acc_mean": acc, "test_acc_std": 0.01, "test_acc_n": 3,
                        }
                    )  # fmt: skip
    for status in ("failed", "diverged"):
        rows.append(
            {
                "job": status, "status": status, "depth": 1, "width": 1024, "optimizer": "sgd",
                "cfg:optimizer.lr": 0.1, "cfg:model.width": 1024, "cfg:trainer.max_epochs": 30,
                "linear/loss_barrier_mean": 99.0, "test_acc_mean": 0.99,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def test_trend_table_groups_by_varied_config_and_ignores_failed():
    table = synthetic_table()
    t = trend_table(table, "linear/loss_barrier")
    assert len(t) == 8  # 2 optimizers x 2 depths x 2 lrs: the lrs are never pooled
    assert list(t.columns[:3]) == ["optimizer", "depth", "cfg:optimizer.lr"]  # cfg:model.width is the axis itself
    assert "cfg:trainer.max_epochs" not in t
    assert (t["n_cells"] == 6).all() and (t["n_points"] == 6).all()  # failed cells ignored
    assert t["converged"].all() and (t["model"] == "a·w^-b + c").all()
    for _, r in t.iterrows():
        oi = ("sgd", "sam").index(r["optimizer"])
        assert r["b"] == pytest.approx(0.5 if r["cfg:optimizer.lr"] == 0.1 else 1.0, rel=1e-6)
        assert r["a"] == pytest.approx(1 + oi + r["depth"], rel=1e-6)
        assert r["c"] == pytest.approx(0.1 * r["depth"], abs=1e-7)
        assert r["tau"] == pytest.approx(-1.0)
    # lower is better: the barrier falls by more than 0.001 at every step, so no plateau inside the sweep
    assert not t["plateau_reached"].any() and (t["plateau"] == "still improving").all()


def test_trend_table_accuracy_plateau_and_depth_axis():
    table = synthetic_table()
    acc = trend_table(table, "test_acc_mean").set_index(["optimizer", "depth", "cfg:optimizer.lr"])
    assert (acc.xs("sgd")["plateau_at"] == 64).all() and (acc.xs("sgd")["plateau_value"] == 0.7).all()
    assert (acc.xs("sam")["plateau"] == "still improving").all()  # higher is better inferred for *acc
    flipped = trend_table(table, "test_acc", higher_is_better=False)
    assert (flipped["plateau_at"] == 16).all()
    depth = trend_table(table, "linear/loss_barrier", axis="depth", by=("optimizer", "width"))
    assert len(depth) == 2 * 6 * 2 and (depth["n_points"] == 2).all()
    assert not depth["converged"].any() and depth["reason"].eq("no fit along depth").all()
    assert depth["tau"].isna().all()  # two depths: below kendall's 3 points
    # deeper is worse here (A and C grow with depth): the plateau is at the shallowest depth
    assert (depth["plateau_at"] == 1).all()


def three_widths(means, se, dof=2) -> pd.DataFrame:
    """One group of three widths (16, 64, 256) with the given cell means and standard errors."""
    return pd.DataFrame([{"job": str(i), "status": "completed", "depth": 2, "width": w, "optimizer": "sgd",
                          "linear/loss_barrier_mean": m, "linear/loss_barrier_std": s * math.sqrt(3),
                          "linear/loss_barrier_n": 3, "linear/loss_barrier_se": s, "linear/loss_barrier_dof": dof}
                         for i, (w, m, s) in enumerate(zip((16, 64, 256), means, se))])  # fmt: skip


def test_no_exponent_from_three_widths_but_a_slope_with_its_interval():
    """Three widths leave one residual degree of freedom: the old log-log fit printed b = -0.36 ± 0.00 for points
    on a line whatever their own errors. Now no exponent; the change per doubling with a 95 % interval from the
    cells' own standard errors (OLS weights c = ±1/4 on log2 w = 4, 6, 8; Welch–Satterthwaite dof)."""
    means, se = 0.1 * np.array([16, 64, 256]) ** 0.36, np.array([0.05, 0.08, 0.05])
    (r,) = trend_table(three_widths(means, se), "linear/loss_barrier").to_dict("records")
    assert r["model"] == "" and math.isnan(r["b"]) and math.isnan(r["b_lo"]) and not r["converged"]
    assert r["reason"] == "3 widths: no exponent (needs >= 4); see the slope"
    slope = (means[2] - means[0]) / 4
    err = math.sqrt((0.05**2 + 0.05**2) / 16)
    assert r["slope"] == pytest.approx(slope) and r["slope_hi"] - r["slope"] == pytest.approx(
        t_dist.ppf(0.975, 4) * err
    )  # middle point: c = 0; two parts of equal variance, 2 dof each: 4 dof
    assert r["slope_lo"] > 0  # the rise is well outside the cells' errors here


def test_slope_interval_covers_with_few_endpoints():
    """Cells of 3 endpoints each (se from 2 dof): the slope's 95 % interval covers the true change per doubling in
    95 % of sweeps (the old residual-based error of 1 dof had no such property)."""
    from landscape_sweep.report.trends import slope_per_doubling

    rng = np.random.default_rng(0)
    w, true = np.array([16.0, 64.0, 256.0]), 0.1
    cover = 0
    for _ in range(3000):
        draws = (1.0 + true * np.log2(w))[:, None] + rng.normal(0, [[0.1], [0.3], [0.2]], (3, 3))
        s = slope_per_doubling(w, draws.mean(1), draws.std(1, ddof=1) / math.sqrt(3), [2, 2, 2])
        cover += s.lo <= true <= s.hi
    assert 0.94 <= cover / 3000 <= 0.985


def test_four_or_five_widths_fit_a_pure_power_law_in_log_log():
    """a·w^-b with its interval from the cells' errors (carried to log y as se/y); refused when a value is not
    positive or within 2 of its standard errors of 0. Coverage of b's interval checked by simulation."""
    from landscape_sweep.report.trends import fit_pure_power_law

    x = np.array([16.0, 32.0, 64.0, 128.0])
    exact = fit_pure_power_law(x, 3.0 * x**-0.5, np.full(4, 0.01), np.full(4, 2))
    assert exact.converged and exact.b == pytest.approx(0.5) and exact.a == pytest.approx(3.0) and exact.c == 0
    lo, hi = exact.b_ci95
    assert lo < 0.5 < hi and exact.dof == 2
    assert not fit_pure_power_law(x[:3], 3.0 * x[:3] ** -0.5).converged  # three widths: none
    assert not fit_pure_power_law(x, np.array([1.0, -1.0, 2.0, 1.0])).converged
    near0 = fit_pure_power_law(x, np.array([1.0, 0.5, 0.2, 0.05]), np.array([0.1, 0.1, 0.1, 0.03]), np.full(4, 2))
    assert not near0.converged and "within 2 standard errors of 0" in near0.reason
    rng, cover = np.random.default_rng(1), 0
    for _ in range(2000):
        draws = (3.0 * x**-0.5)[:, None] * (1 + rng.normal(0, 0.05, (4, 3)))
        f = fit_pure_power_law(x, draws.mean(1), draws.std(1, ddof=1) / math.sqrt(3), np.full(4, 2))
        lo, hi = f.b_ci95
        cover += lo <= 0.5 <= hi
    assert 0.93 <= cover / 2000 <= 0.99
    growing = fit_pure_power_law(x, 0.1 * x**0.3)  # grows with width: negative b; no errors, no interval
    assert growing.b == pytest.approx(-0.3) and math.isnan(growing.b_ci95[0])


def test_a_rising_barrier_reads_worsens_and_tau_has_its_p_value():
    """A barrier that rises with width was labelled `plateau 16`; it worsens. Over 3 widths τ = 1 has p = 1/3."""
    t = trend_table(three_widths([0.5, 0.7, 0.9], [0.02] * 3), "linear/loss_barrier")
    assert t.loc[0, "plateau"] == "worsens" and (t.loc[0, "tau"], t.loc[0, "tau_n"]) == (1.0, 3)
    assert t.loc[0, "tau_p"] == pytest.approx(1 / 3)
    u = plateau([16, 32, 64, 128], [1.0, 0.5, 0.5, 0.9], [0.05] * 4, higher_is_better=False)
    assert u.label == "worsens after 32"

"""Trends along width and depth on constructed data with known answers: power-law fits, plateaus, the table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

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
    assert step.reached and step.at == 64 and step.value == 1.0 and step.label == "64" and step.n == 5
    going = plateau(x, [2.0, 1.5, 1.0, 0.5, 0.1], [0.05] * 5, higher_is_better=False)
    assert not going.reached and math.isnan(going.at) and going.label == "> 256"
    assert going.reason == "still improving at the largest x"
    flat = plateau(x, [1.0, 1.01, 0.99, 1.0, 1.0], [0.02] * 5, higher_is_better=False)
    assert flat.reached and flat.at == 16
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
    assert down.at == 16 and down.value == 0.50
    nan = plateau([16, 32], [1.0, 0.99], [float("nan")] * 2, higher_is_better=False)  # NaN spread counts as 0
    assert nan.spread_missing and not nan.reached
    assert plateau([16, 32], [1.0, 0.99], [0.02, float("nan")], higher_is_better=False).at == 16
    one = plateau([16], [1.0], [0.1], higher_is_better=False)
    assert not one.reached and one.label == "n/a" and one.reason == "needs >= 2 points"


def test_theory_reference_anchored_at_smallest_width():
    ref = theory_reference([64, 16, 256], 2.0)
    assert ref == pytest.approx([1.0, 2.0, 0.5])


def synthetic_table() -> pd.DataFrame:
    """2 optimizers x 2 depths x 2 lrs x 5 widths: barrier = A·w^-b + C with b = 0.5 at lr 0.1, 1.0 at lr 0.05
    (pooling the lrs would break the exact fit); test_acc plateaus at width 64 for sgd and still climbs for sam.
    Two failed cells carry absurd values that must be ignored."""
    rows = []
    widths = (16, 32, 64, 128, 256)
    for oi, opt in enumerate(("sgd", "sam")):
        for depth in (1, 2):
            for lr, b in ((0.1, 0.5), (0.05, 1.0)):
                for wi, w in enumerate(widths):
                    acc = (0.5, 0.6, 0.7, 0.7, 0.7)[wi] if opt == "sgd" else 0.5 + 0.05 * wi
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
    assert (t["n_cells"] == 5).all() and (t["n_points"] == 5).all()  # failed cells ignored
    assert t["converged"].all()
    for _, r in t.iterrows():
        oi = ("sgd", "sam").index(r["optimizer"])
        assert r["b"] == pytest.approx(0.5 if r["cfg:optimizer.lr"] == 0.1 else 1.0, rel=1e-6)
        assert r["a"] == pytest.approx(1 + oi + r["depth"], rel=1e-6)
        assert r["c"] == pytest.approx(0.1 * r["depth"], abs=1e-7)
        assert r["tau"] == pytest.approx(-1.0)
    # lower is better: the barrier falls by more than 0.001 at every step, so no plateau inside the sweep
    assert not t["plateau_reached"].any() and (t["plateau"] == "> 256").all()


def test_trend_table_accuracy_plateau_and_depth_axis():
    table = synthetic_table()
    acc = trend_table(table, "test_acc_mean").set_index(["optimizer", "depth", "cfg:optimizer.lr"])
    assert (acc.xs("sgd")["plateau_at"] == 64).all() and (acc.xs("sgd")["plateau_value"] == 0.7).all()
    assert (acc.xs("sam")["plateau"] == "> 256").all()  # higher is better inferred for *acc
    flipped = trend_table(table, "test_acc", higher_is_better=False)
    assert (flipped["plateau_at"] == 16).all()
    depth = trend_table(table, "linear/loss_barrier", axis="depth", by=("optimizer", "width"))
    assert len(depth) == 2 * 5 * 2 and (depth["n_points"] == 2).all()
    assert not depth["converged"].any() and depth["reason"].eq("no power-law fit along depth").all()
    assert depth["tau"].isna().all()  # two depths: below kendall's 3 points
    # deeper is worse here (A and C grow with depth): the plateau is at the shallowest depth
    assert (depth["plateau_at"] == 1).all()


def test_three_widths_fit_a_pure_power_law():
    """Three widths cannot fit an asymptote: b comes from a log-log line with c fixed at 0, said in `reason`."""
    from landscape_sweep.report.trends import fit_pure_power_law

    x = np.array([16.0, 64.0, 256.0])
    exact = fit_pure_power_law(x, 3.0 * x**-0.5)
    assert exact.converged and exact.b == pytest.approx(0.5) and exact.a == pytest.approx(3.0) and exact.c == 0
    assert exact.b_stderr == pytest.approx(0.0, abs=1e-12) and "c fixed at 0" in exact.reason
    noisy = fit_pure_power_law(x, 3.0 * x**-0.5 * np.array([1.05, 0.95, 1.02]))
    lo, hi = noisy.b_ci95
    assert noisy.dof == 1 and 0 < noisy.b_stderr < 0.1 and lo < 0.5 < hi
    assert not fit_pure_power_law(x, np.array([1.0, -1.0, 2.0])).converged  # no logarithm of a negative value
    growing = fit_pure_power_law(x, 0.1 * x**0.3)  # a barrier that grows with width: negative b
    assert growing.b == pytest.approx(-0.3)

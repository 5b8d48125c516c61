"""Kendall τ between landscape measures and the generalization gap across the completed cells of a sweep.

Overall τ ranks all cells at once. The granulated τ of Jiang et al. 2020 ("Fantastic Generalization Measures and
Where to Find Them") controls for the other hyperparameters: for a hyperparameter h, cells are grouped by every
other cell field, τ is computed inside each group (cells that differ only in h), and ψ_h is the mean over groups;
Ψ is the mean of ψ_h over the varied hyperparameters. τ of a group needs >= 2 cells with finite values (with two
values of h it is the sign agreement of measure and gap); the overall τ needs >= 3 cells; otherwise NaN (n/a).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from landscape_sweep.report.table import CELL_KEYS, SHARPNESS_METRICS

HYPERPARAMETERS = ("depth", "width", "optimizer", "label_noise", "train_size", "arch")
GROUP_KEYS = tuple(k for k in CELL_KEYS if k != "num_params")  # num_params follows arch/depth/width
BARRIER_METRICS = ("loss_barrier", "error_barrier", "test_loss_barrier", "test_error_barrier")
TARGET = "gen_gap_mean"
TAU_NAME = "kendall_tau.csv"


def kendall(x: pd.Series | np.ndarray, y: pd.Series | np.ndarray, min_n: int = 3) -> tuple[float, int]:
    """(τ_b, n) over the pairs where both values are finite; τ is NaN for n < min_n or a constant side."""
    from scipy.stats import kendalltau  # deferred: scipy.stats costs ~1 s of import time

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < min_n or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan, n
    return float(kendalltau(x[ok], y[ok]).statistic), n


def completed(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["status"] == "completed"]


def measures(table: pd.DataFrame) -> list[str]:
    """Measure columns (stems without `_mean`) with at least one finite value among completed cells."""
    done = completed(table)
    methods = [c.split("/")[0] for c in table.columns if c.endswith("/num_pairs")]
    names = [f"{m}/{k}" for m in methods for k in BARRIER_METRICS] + list(SHARPNESS_METRICS)
    return [n for n in names if f"{n}_mean" in done and np.isfinite(done[f"{n}_mean"].astype(float)).any()]


def varied(table: pd.DataFrame, keys: tuple[str, ...] = HYPERPARAMETERS) -> list[str]:
    """The hyperparameters taking more than one value among completed cells."""
    done = completed(table)
    return [k for k in keys if k in done and done[k].astype(str).nunique() > 1]


def granulated_tau(table: pd.DataFrame, measure: str, hp: str, target: str = TARGET) -> tuple[float, int]:
    """(ψ_hp, number of groups with a defined τ) for measure column `measure` (full column name)."""
    done = completed(table)
    others = [k for k in GROUP_KEYS if k != hp and k in done]
    keys = done[others].astype(str) if others else pd.DataFrame(index=done.index)
    groups = keys.groupby(others).groups.values() if others else [done.index]
    taus = []
    for idx in groups:
        g = done.loc[idx]
        if g[hp].astype(str).nunique() < 2:
            continue
        tau, _ = kendall(g[measure], g[target], min_n=2)
        if math.isfinite(tau):
            taus.append(tau)
    return (float(np.mean(taus)) if taus else math.nan), len(taus)


def correlation_table(table: pd.DataFrame, target: str = TARGET) -> pd.DataFrame:
    """One row per measure: `measure, n, tau`, then `psi[<hp>]` and `groups[<hp>]` per varied hp, then `Psi`."""
    done, hps, rows = completed(table), varied(table), []
    for m in measures(table):
        col = f"{m}_mean"
        tau, n = kendall(done[col], done[target])
        row = {"measure": m, "n": n, "tau": tau}
        for hp in hps:
            row[f"psi[{hp}]"], row[f"groups[{hp}]"] = granulated_tau(table, col, hp, target)
        psis = [row[f"psi[{hp}]"] for hp in hps if math.isfinite(row[f"psi[{hp}]"])]
        row["Psi"] = float(np.mean(psis)) if psis else math.nan
        rows.append(row)
    cols = ["measure", "n", "tau", *[f"{p}[{hp}]" for hp in hps for p in ("psi", "groups")], "Psi"]
    return pd.DataFrame(rows, columns=cols)

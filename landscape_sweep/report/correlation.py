"""Kendall τ between landscape measures and the generalization gap across the completed cells of a sweep.

Overall τ ranks all cells at once. The granulated τ of Jiang et al. 2020 ("Fantastic Generalization Measures and
Where to Find Them") controls for the other hyperparameters: for a hyperparameter h, cells are grouped by every
other hyperparameter the sweep varies, τ is computed inside each group (cells that differ only in h), and ψ_h is
the mean over groups. The hyperparameters are the varied cell fields (depth, width, optimizer, …) and every other
config value that differs between cells (`cfg:<key>` columns: lr, rho, weight decay, batch size, epochs, …); keys
that split the cells exactly like an earlier one (e.g. `model.depth` like `depth`) are the same hyperparameter;
Ψ is the mean of ψ_h over the varied hyperparameters. τ of a group needs >= 2 cells with finite values (with two
values of h it is the sign agreement of measure and gap); the overall τ needs >= 3 cells; otherwise NaN (n/a).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from landscape_sweep.results import BARRIER_MEASURES, SHARPNESS_MEASURES

HYPERPARAMETERS = ("depth", "width", "optimizer", "label_noise", "train_size", "arch", "norm", "dataset")
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
    names = [f"{m}/{k}" for m in methods for k in BARRIER_MEASURES] + list(SHARPNESS_MEASURES)
    return [n for n in names if f"{n}_mean" in done and np.isfinite(done[f"{n}_mean"].astype(float)).any()]


def varied(table: pd.DataFrame) -> list[str]:
    """The hyperparameters that take more than one value among completed cells, one name per partition of the
    cells (cell fields first, then `cfg:` config columns)."""
    done = completed(table)
    candidates = [k for k in HYPERPARAMETERS if k in done] + [c for c in done.columns if c.startswith("cfg:")]
    out, partitions = [], set()
    for k in candidates:
        values = done[k].astype(str)
        part = tuple(pd.factorize(values)[0])
        if values.nunique() > 1 and part not in partitions:
            partitions.add(part)
            out.append(k)
    return out


def granulated_tau(table: pd.DataFrame, measure: str, hp: str, target: str = TARGET) -> tuple[float, int]:
    """(ψ_hp, number of groups with a defined τ) for measure column `measure` (full column name)."""
    done = completed(table)
    others = [k for k in varied(table) if k != hp]
    groups = done[others].astype(str).groupby(others).groups.values() if others else [done.index]
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

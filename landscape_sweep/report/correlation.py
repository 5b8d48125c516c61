"""Kendall τ between landscape measures and the generalization gap across the completed cells of a sweep.

Overall τ ranks all cells at once. The granulated τ of Jiang et al. 2020 ("Fantastic Generalization Measures and
Where to Find Them") controls for the other hyperparameters: for a hyperparameter h, cells are grouped by every
other hyperparameter the sweep varies, τ is computed inside each group (cells that differ only in h), and ψ_h is
the mean over groups. The hyperparameters are the varied cell fields (depth, width, optimizer, …) and every other
config value that differs between cells (`cfg:<key>` columns: lr, rho, weight decay, batch size, epochs, …); keys
that split the cells exactly like an earlier one (e.g. `model.depth` like `depth`) are the same hyperparameter;
Ψ is the mean of ψ_h over the varied hyperparameters. τ of a group needs >= 2 cells with finite values (with two
values of h it is the sign agreement of measure and gap); the overall τ needs >= 3 cells; otherwise NaN (n/a).
The overall τ comes with its two-sided p-value under independence (exact over all orderings for n <= 7); ψ is a
mean of small-group τ (2 cells: ±1 only), a sign vote rather than a test, and has none.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pandas as pd

from landscape_sweep.results import BARRIER_MEASURES, SHARPNESS_MEASURES

HYPERPARAMETERS = ("depth", "width", "optimizer", "label_noise", "train_size", "arch", "norm", "dataset")
TARGET = "gen_gap_mean"
TAU_NAME = "kendall_tau.csv"


def tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall τ_b of two finite float arrays (NaN when a side is constant); exact, O(n²) without scipy's per-call
    overhead, which dominates for the many small groups of the granulated τ."""
    if len(x) > 300:
        from scipy.stats import kendalltau  # deferred: scipy.stats costs ~1 s of import time

        return float(kendalltau(x, y).statistic)
    i, j = np.triu_indices(len(x), 1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    denom = math.sqrt(float(np.count_nonzero(sx)) * float(np.count_nonzero(sy)))
    return float((sx * sy).sum() / denom) if denom > 0 else math.nan


def kendall(x: pd.Series | np.ndarray, y: pd.Series | np.ndarray, min_n: int = 3) -> tuple[float, int]:
    """(τ_b, n) over the pairs where both values are finite; τ is NaN for n < min_n or a constant side."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < min_n or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan, n
    return tau_b(x[ok], y[ok]), n


EXACT_MAX_N = 7  # up to 7! = 5040 orderings: the permutation p-value is enumerated exactly (ties included)


@functools.lru_cache(maxsize=8)
def _permutations(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))), dtype=np.intp)


def tau_pvalue(x: np.ndarray, y: np.ndarray, tau: float) -> float:
    """Two-sided p-value of Kendall τ_b under independence: for n ≤ EXACT_MAX_N the exact share of the n! orderings
    of y whose |τ_b| reaches |tau| (ties kept as they are), else scipy's `kendalltau` (exact without ties, else
    the normal approximation). Over 3 points τ takes only ±1 and ±1/3, and even τ = ±1 has p = 1/3."""
    n = len(x)
    if not math.isfinite(tau):
        return math.nan
    if n > EXACT_MAX_N:
        from scipy.stats import kendalltau  # deferred: scipy.stats costs ~1 s of import time

        return float(kendalltau(x, y).pvalue)
    i, j = np.triu_indices(n, 1)
    sx = np.sign(x[i] - x[j])
    perms = np.asarray(y, float)[_permutations(n)]
    sy = np.sign(perms[:, i] - perms[:, j])
    denom = math.sqrt(float(np.count_nonzero(sx)) * float(np.count_nonzero(sy[0])))
    taus = (sx * sy).sum(axis=1) / denom
    return float(np.mean(np.abs(taus) >= abs(tau) - 1e-12))


def kendall_test(x: pd.Series | np.ndarray, y: pd.Series | np.ndarray, min_n: int = 3) -> tuple[float, int, float]:
    """(τ_b, n, two-sided p) over the pairs where both values are finite (`kendall`, `tau_pvalue`)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    tau, n = kendall(x, y, min_n)
    ok = np.isfinite(x) & np.isfinite(y)
    return tau, n, tau_pvalue(x[ok], y[ok], tau)


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


def _groups(done: pd.DataFrame, hp: str, hps: list[str]) -> list[np.ndarray]:
    """Row positions of each group of cells that differ only in `hp` (groups where `hp` takes one value dropped)."""
    others = [k for k in hps if k != hp]
    keys = done[others].astype(str).agg("\x1f".join, axis=1) if others else pd.Series("", index=done.index)
    codes = pd.factorize(keys)[0]
    hp_codes = pd.factorize(done[hp].astype(str))[0]
    order = np.argsort(codes, kind="stable")
    splits = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
    return [g for g in splits if len(np.unique(hp_codes[g])) > 1]


def _psi(x: np.ndarray, y: np.ndarray, groups: list[np.ndarray]) -> tuple[float, int]:
    taus = [t for t in (kendall(x[g], y[g], min_n=2)[0] for g in groups) if math.isfinite(t)]
    return (float(np.mean(taus)) if taus else math.nan), len(taus)


def granulated_tau(table: pd.DataFrame, measure: str, hp: str, target: str = TARGET) -> tuple[float, int]:
    """(ψ_hp, number of groups with a defined τ) for measure column `measure` (full column name)."""
    done = completed(table)
    groups = _groups(done, hp, varied(table))
    return _psi(done[measure].to_numpy(float), done[target].to_numpy(float), groups)


def correlation_table(table: pd.DataFrame, target: str = TARGET) -> pd.DataFrame:
    """One row per measure: `measure, n, tau, p` (two-sided, `tau_pvalue`), then `psi[<hp>]` and `groups[<hp>]` per
    varied hp, then `Psi`."""
    done, hps, rows = completed(table), varied(table), []
    groups = {hp: _groups(done, hp, hps) for hp in hps}  # the grouping is the same for every measure
    y = done[target].to_numpy(float) if target in done else np.full(len(done), np.nan)
    for m in measures(table):
        x = done[f"{m}_mean"].to_numpy(float)
        tau, n, p = kendall_test(x, y)
        row = {"measure": m, "n": n, "tau": tau, "p": p}
        for hp in hps:
            row[f"psi[{hp}]"], row[f"groups[{hp}]"] = _psi(x, y, groups[hp])
        psis = [row[f"psi[{hp}]"] for hp in hps if math.isfinite(row[f"psi[{hp}]"])]
        row["Psi"] = float(np.mean(psis)) if psis else math.nan
        rows.append(row)
    cols = ["measure", "n", "tau", "p", *[f"{k}[{hp}]" for hp in hps for k in ("psi", "groups")], "Psi"]
    return pd.DataFrame(rows, columns=cols)

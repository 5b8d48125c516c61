"""How a measure changes along width or depth, and where more of it stops helping.

For every group of completed cells that differ only in the axis (width or depth), `trend_table` gives:

- along width, a power-law fit `y = a·x^(-b) + c` (`fit_power_law`): b is the decay rate, c the asymptote a wider
  network would approach; recent theory predicts b = 1/2 for the barrier of aligned two-layer networks
  (`theory_reference` draws that line);
- the plateau (`plateau`): the smallest axis value beyond which the measure improves by no more than the
  endpoint-to-endpoint spread;
- Kendall τ of the measure against the axis: a monotonic trend that needs no model.

Groups are formed by the given fields plus every other hyperparameter that varies among the completed cells
(`correlation.varied`: cell fields and `cfg:` columns), so cells of different lr, rho, … are never pooled.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from landscape_sweep.report.correlation import completed, kendall, varied

B_BOUNDS = (-3.0, 5.0)  # decay exponents tried: from growing like x^3 to decaying like x^-5
MIN_WIDTHS = 4  # three parameters: four distinct x are the fewest that leave a residual to judge the fit by


@dataclass(frozen=True)
class PowerFit:
    """`y = a·x^(-b) + c` fitted by least squares; stderrs are NaN when the fit did not converge. Without yerr they
    are scaled by the reduced χ² (scipy's curve_fit, absolute_sigma=False); with yerr, yerr is taken as the
    absolute 1σ error of each y and `chi2_red` says whether the residuals agree with it (≈ 1)."""

    a: float
    b: float
    c: float
    a_stderr: float
    b_stderr: float
    c_stderr: float
    n: int
    dof: int
    chi2_red: float
    weighted: bool
    converged: bool
    reason: str = ""

    @property
    def b_ci95(self) -> tuple[float, float]:
        """Wald 95 % interval of b: ±t(dof)·stderr when the scale was estimated from the residuals, ±1.96·stderr
        with absolute yerr; (NaN, NaN) when not converged. Approximate: the model is nonlinear in b."""
        if not (self.converged and math.isfinite(self.b_stderr)):
            return math.nan, math.nan
        from scipy.stats import norm, t  # deferred: scipy.stats costs ~1 s of import time

        q = float(norm.ppf(0.975) if self.weighted else t.ppf(0.975, self.dof))
        return self.b - q * self.b_stderr, self.b + q * self.b_stderr


def _failed(n: int, reason: str, weighted: bool = False, est: tuple[float, float, float] | None = None) -> PowerFit:
    a, b, c = est if est else (math.nan,) * 3
    nan = math.nan
    return PowerFit(a, b, c, nan, nan, nan, n, max(n - 3, 0), nan, weighted, False, reason)


def _profile(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """(a, c, weighted SSR) of the best fit for each fixed b (an array): the model is linear in a and c, solved in
    closed form on weighted-centred data, x^-b divided by its largest value for conditioning."""
    f = x[None, :] ** -b[:, None]
    top = np.abs(f).max(axis=1, keepdims=True)
    f = f / top
    w2 = (w**2)[None, :]
    fc = f - (w2 * f).sum(1, keepdims=True) / w2.sum()
    yc = y - (w2 * y).sum() / w2.sum()
    sff = (w2 * fc**2).sum(1)
    a = np.divide((w2 * fc * yc).sum(1), sff, out=np.zeros_like(sff), where=sff > 0)  # b = 0: x^-b is constant
    c = ((w2 * (y - a[:, None] * f)).sum(1)) / w2.sum()
    ssr = (w2 * (y - a[:, None] * f - c[:, None]) ** 2).sum(1)
    return a / top[:, 0], c, ssr


def fit_power_law(x: Sequence[float], y: Sequence[float], yerr: Sequence[float] | None = None) -> PowerFit:
    """Fit `y = a·x^(-b) + c`, b in B_BOUNDS, over the points with finite y and x > 0.

    Weighted by 1/yerr² when every yerr is finite and > 0, unweighted otherwise (`weighted` says which). b is found
    by a grid over B_BOUNDS on the profile SSR (a, c solved exactly for each b), refined by a bounded scalar
    search, so no start value can trap it in a local minimum. Not converged (with `reason`) when there are fewer
    than 4 distinct x, the search fails, b ends on a bound, or the covariance is singular (e.g. a flat curve:
    a = 0 leaves b undetermined); the estimates are still returned where they exist.
    """
    from scipy.optimize import minimize_scalar  # deferred: scipy costs ~1 s of import time

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    e = np.full_like(y, np.nan) if yerr is None else np.asarray(yerr, dtype=float)
    ok = np.isfinite(x) & (x > 0) & np.isfinite(y)
    x, y, e = x[ok], y[ok], e[ok]
    n = len(x)
    if len(np.unique(x)) < MIN_WIDTHS:
        return _failed(n, f"needs >= {MIN_WIDTHS} widths")
    weighted = bool(np.all(np.isfinite(e) & (e > 0)))
    w = 1.0 / e if weighted else np.ones_like(y)

    lo, hi = B_BOUNDS
    grid = np.linspace(lo, hi, 161)
    ssr = _profile(x, y, w, grid)[2]
    if not np.isfinite(ssr).any():
        return _failed(n, "optimizer failed: non-finite residuals", weighted)
    i = int(np.nanargmin(ssr))
    res = minimize_scalar(
        lambda b: _profile(x, y, w, np.array([b]))[2][0],
        bounds=(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]),
        method="bounded",
        options={"xatol": 1e-10},
    )
    b = float(res.x) if res.success and res.fun <= ssr[i] else float(grid[i])
    a, c, s = (float(v[0]) for v in _profile(x, y, w, np.array([b])))
    if not all(map(math.isfinite, (a, b, c, s))):
        return _failed(n, "optimizer failed: non-finite estimate", weighted)
    if min(b - lo, hi - b) < 1e-6:
        return _failed(n, f"b at its bound {b:g}", weighted, (a, b, c))

    f = x ** (-b)
    if abs(a) * np.ptp(f) <= np.sqrt(np.finfo(float).eps) * max(np.abs(y).max(), np.finfo(float).tiny):
        return _failed(n, "singular covariance: no x-dependence (a = 0)", weighted, (a, b, c))
    # covariance from the Jacobian at the optimum (as curve_fit), columns scaled for conditioning
    jac = np.column_stack([f, -a * f * np.log(x), np.ones_like(f)]) * w[:, None]
    norms = np.linalg.norm(jac, axis=0)
    if np.any(norms == 0):
        return _failed(n, "singular covariance", weighted, (a, b, c))
    _, sv, vt = np.linalg.svd(jac / norms, full_matrices=False)
    if sv[-1] <= np.finfo(float).eps * max(jac.shape) * sv[0]:
        return _failed(n, "singular covariance", weighted, (a, b, c))
    cov = (vt.T / sv**2) @ vt / np.outer(norms, norms)
    dof = n - 3
    chi2_red = s / dof
    if not weighted:
        cov = cov * chi2_red
    se = np.sqrt(np.diag(cov))
    return PowerFit(a, b, c, *map(float, se), n, dof, float(chi2_red), weighted, True)


def fit_pure_power_law(x: Sequence[float], y: Sequence[float]) -> PowerFit:
    """`y = a·x^(-b)` (c = 0) by least squares in log-log space, for sweeps with three widths (too few for the
    asymptote): b's stderr comes from the one residual degree of freedom. `reason` says c was fixed at 0. Not
    converged when a value is not positive (no logarithm) or fewer than 3 distinct x remain."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 3:
        return _failed(len(x), "needs >= 3 widths")
    if (y <= 0).any():
        return _failed(len(x), "needs >= 4 widths (3 widths: a pure power law needs positive values)")
    lx, ly = np.log(x), np.log(y)
    (slope, intercept), cov = np.polyfit(lx, ly, 1, cov="unscaled")
    dof = len(x) - 2
    chi2 = float(np.sum((ly - (slope * lx + intercept)) ** 2)) / dof
    b_err = math.sqrt(cov[0, 0] * chi2) if chi2 > 0 else 0.0
    return PowerFit(a=math.exp(intercept), b=-slope, c=0.0, a_stderr=math.nan, b_stderr=b_err, c_stderr=0.0,
                    n=len(x), dof=dof, chi2_red=chi2, weighted=False, converged=True,
                    reason="c fixed at 0 (3 widths): a·w^-b fitted in log-log")  # fmt: skip


@dataclass(frozen=True)
class Plateau:
    """Where a measure stops improving along x (`plateau`). `at`/`value` are NaN unless `reached`."""

    at: float
    value: float
    reached: bool
    n: int
    x_max: float
    spread_missing: bool  # some spread was NaN and counted as 0 (any improvement then counts)
    reason: str = ""

    @property
    def label(self) -> str:
        """`64`, `> 256` (still improving at the largest x) or `n/a`."""
        if self.reached:
            return f"{self.at:g}"
        return f"> {self.x_max:g}" if self.n >= 2 else "n/a"


def plateau(x: Sequence[float], mean: Sequence[float], spread: Sequence[float], higher_is_better: bool) -> Plateau:
    """The plateau of a measure along x: the smallest x_i such that for every x_j > x_i

        improvement(j over i) = ±(mean_j - mean_i) <= max(spread_i, spread_j)

    (+ when higher is better, e.g. accuracy; − for barriers, losses, sharpness). Compared with every larger x, not
    only the next one, so a slow climb whose steps each hide in the noise still counts once it adds up; a decline
    counts as no improvement. `spread` is the caller's per-point noise scale; `trend_table` passes the sample std
    over endpoints/pairs, the network-to-network variability, which unlike a standard error does not shrink with
    more endpoints, so the plateau estimates a property of the width, not of the sample size. NaN spread counts as
    0 (`spread_missing`). Points with non-finite x or mean are dropped. `reached` is False when only the largest x
    qualifies (the measure still improves by more than its spread at the end of the sweep: the plateau lies
    beyond it) or there are fewer than 2 points.
    """
    x, m, s = (np.asarray(v, dtype=float) for v in (x, mean, spread))
    ok = np.isfinite(x) & np.isfinite(m)
    order = np.argsort(x[ok], kind="stable")
    x, m, s = x[ok][order], m[ok][order], s[ok][order]
    missing = bool(np.isnan(s).any())
    s = np.nan_to_num(s, nan=0.0)
    n, x_max = len(x), float(x[-1]) if len(x) else math.nan
    if n < 2:
        return Plateau(math.nan, math.nan, False, n, x_max, missing, "needs >= 2 points")
    sign = 1.0 if higher_is_better else -1.0
    for i in range(n - 1):
        later = x > x[i]
        if np.all(sign * (m[later] - m[i]) <= np.maximum(s[i], s[later])):
            return Plateau(float(x[i]), float(m[i]), True, n, x_max, missing)
    return Plateau(math.nan, math.nan, False, n, x_max, missing, "still improving at the largest x")


def theory_reference(x: Sequence[float], y_at_xmin: float, exponent: float = 0.5) -> np.ndarray:
    """The reference line `y_at_xmin·(x/x_min)^-exponent`, anchored at the smallest x: the O(w^-1/2) decay that
    theory predicts for the barrier of aligned two-layer networks, drawn beside the measured barriers."""
    x = np.asarray(x, dtype=float)
    return y_at_xmin * (x / np.nanmin(x)) ** (-exponent)


def _higher_is_better(measure: str) -> bool:
    """Accuracies (`*acc`) improve upwards; barriers, losses, gaps and sharpness downwards."""
    return measure.rsplit("/", 1)[-1].endswith("acc")


def trend_table(
    table: pd.DataFrame,
    measure: str,
    axis: str = "width",
    by: Sequence[str] | None = ("optimizer", "depth"),
    higher_is_better: bool | None = None,
    spread: Literal["std", "stderr"] = "std",
    fit: bool | None = None,
) -> pd.DataFrame:
    """One row per group of completed cells along `axis`, sorted by the group keys.

    `measure`: a table stem (`linear_aligned/loss_barrier`, `test_acc`; a trailing `_mean` is dropped). Groups:
    `by` (None: none; keys equal to the axis or absent from the table are skipped) plus every other varied
    hyperparameter of the completed cells, so nothing is pooled. `higher_is_better` None: True for accuracies.
    `spread`: the plateau's noise scale, `std` (sample std over endpoints/pairs) or `stderr` (std/√n). `fit`
    None: the power law along width only; it is weighted by the cells' standard errors when all are positive.

    Columns: the group keys, `measure, axis, n_cells` (completed cells), `n_points` (finite values: used by the fit,
    the plateau and τ), `a, b, b_stderr, b_lo, b_hi` (95 %), `c, chi2_red, converged, reason`, `plateau_at,
    plateau_reached, plateau_value, plateau` (label: `64`, `> 256`, `n/a`), `spread_missing, tau` (Kendall τ of
    the measure vs the axis; NaN under 3 points).
    """
    stem = measure.removesuffix("_mean")
    hib = _higher_is_better(stem) if higher_is_better is None else higher_is_better
    fit = axis == "width" if fit is None else fit
    done = completed(table)
    keys = [k for k in (by or ()) if k != axis and k in done]
    keys += [k for k in varied(table) if k != axis and k not in keys]
    cols = [f"{stem}_mean", f"{stem}_std", f"{stem}_n"]
    groups = done.groupby(keys, dropna=False, sort=False) if keys else [((), done)]
    rows = []
    for key, g in groups:
        g = g.sort_values(axis)
        x, mean, std, cnt = (g[c].to_numpy(dtype=float) for c in (axis, *cols))
        with np.errstate(divide="ignore", invalid="ignore"):
            stderr = std / np.sqrt(cnt)
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row |= {"measure": stem, "axis": axis, "n_cells": len(g), "n_points": int(np.isfinite(mean).sum())}
        if fit:
            p = fit_power_law(x, mean, stderr)
            if not p.converged and p.n == 3:  # three widths: no asymptote to fit, but a log-log slope
                p = fit_pure_power_law(x, mean)
            lo, hi = p.b_ci95
            row |= {"a": p.a, "b": p.b, "b_stderr": p.b_stderr, "b_lo": lo, "b_hi": hi, "c": p.c}
            row |= {"chi2_red": p.chi2_red, "converged": p.converged, "reason": p.reason}
        else:
            row |= dict.fromkeys(("a", "b", "b_stderr", "b_lo", "b_hi", "c", "chi2_red"), math.nan)
            row |= {"converged": False, "reason": f"no power-law fit along {axis}"}
        pl = plateau(x, mean, std if spread == "std" else stderr, hib)
        row |= {"plateau_at": pl.at, "plateau_reached": pl.reached, "plateau_value": pl.value, "plateau": pl.label}
        row |= {"spread_missing": pl.spread_missing, "tau": kendall(x, mean)[0]}
        rows.append(row)
    out = pd.DataFrame(rows)
    if keys and len(out):
        with contextlib.suppress(TypeError):  # mixed types in a key column: keep the table's order
            out = out.sort_values(keys, kind="stable", ignore_index=True)
    return out

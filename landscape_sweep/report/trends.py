"""How a measure changes along width or depth, and where more of it stops helping.

For every group of completed cells that differ only in the axis (width or depth), `trend_table` gives:

- along width, the change per doubling of width (`slope_per_doubling`) with a 95 % interval propagated from each
  cell's own standard error, for every group; and an exponent b only where the widths support one — never more
  parameters than points allow: `a·w^-b + c` (`fit_power_law`: b the decay rate, c the asymptote) from
  POWER_LAW_MIN_WIDTHS widths, `a·w^-b` in log-log (`fit_pure_power_law`) from LOGLOG_MIN_WIDTHS, none below
  (three widths leave one residual degree of freedom: an exponent's error from it is meaningless). Recent theory
  predicts b = 1/2 for the barrier of aligned two-layer networks (`theory_reference` draws that line);
- what the measure does along the axis (`plateau`, its `label`): a plateau at x (the smallest x beyond which it
  improves by no more than the endpoint-to-endpoint spread), still improving, worsens, or no trend within spread;
- Kendall τ of the measure against the axis, with its n and exact p-value (`correlation.kendall_test`): over three
  depths τ = ±1 has p = 1/3.

Groups are formed by the given fields plus every other hyperparameter that varies among the completed cells
(`correlation.varied`: cell fields and `cfg:` columns), so cells of different lr, rho, … are never pooled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from landscape_sweep.report.correlation import completed, kendall_test, varied
from landscape_sweep.results import t975

B_BOUNDS = (-3.0, 5.0)  # decay exponents tried: from growing like x^3 to decaying like x^-5
MIN_WIDTHS = 4  # three parameters: four distinct x are the fewest that leave a residual to judge the fit by
POWER_LAW_MIN_WIDTHS = 6  # the report fits a·w^-b + c (3 parameters) only with >= 3 residual degrees of freedom
LOGLOG_MIN_WIDTHS = 4  # a·w^-b (2 parameters, log-log) with >= 2; fewer widths get a slope per doubling only
MAX_REL_ERROR = 0.5  # log-log: a cell whose se exceeds half its mean is within its error of 0 (no logarithm)


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
    ci_dof: float = math.nan  # log-log fits: the Welch–Satterthwaite degrees of freedom of b's interval

    @property
    def b_ci95(self) -> tuple[float, float]:
        """95 % interval of b: ±t(ci_dof)·stderr for a log-log fit (`fit_pure_power_law`); else Wald, ±t(dof)·stderr
        when the scale was estimated from the residuals, ±1.96·stderr with absolute yerr (approximate: the model
        is nonlinear in b); (NaN, NaN) when not converged."""
        if not (self.converged and math.isfinite(self.b_stderr)):
            return math.nan, math.nan
        from scipy.stats import norm  # deferred: scipy.stats costs ~1 s of import time

        if math.isfinite(self.ci_dof):
            q = t975(self.ci_dof)
        else:
            q = float(norm.ppf(0.975)) if self.weighted else t975(self.dof)
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


@dataclass(frozen=True)
class Slope:
    """A least-squares slope of the cells' means with a 95 % interval from each cell's own error (`linear_slope`)."""

    value: float
    se: float
    dof: float  # Welch–Satterthwaite degrees of freedom of the interval
    lo: float
    hi: float
    intercept: float
    chi2_red: float  # Σ((y − fit)/se)² / (n − 2): well above 1 when the points scatter beyond their errors
    n: int


def _ws_dof(parts: np.ndarray, dof: np.ndarray) -> float:
    """Welch–Satterthwaite degrees of freedom of a sum of independent variance estimates `parts` with `dof` each."""
    total = parts.sum()
    if total <= 0:
        return math.inf
    return float(total**2 / np.sum(parts**2 / dof))


def linear_slope(x: Sequence[float], y: Sequence[float], se: Sequence[float], dof: Sequence[float]) -> Slope:
    """Ordinary least-squares slope of y on x (points with finite x and y), with a 95 % interval from the points'
    own standard errors `se` (each with `dof` degrees of freedom).

    The slope is Σ c_i·y_i with fixed c_i, so given the points' errors its error is exact: se² = Σ c_i²·se_i², what
    a parametric bootstrap over each cell's standard error converges to. The interval is ±t(ν)·se with the
    Welch–Satterthwaite ν, which carries the uncertainty of the cells' own few-endpoint errors. The slope is
    unweighted, a property of the means rather than of their errors; the residuals do not enter the interval
    (three points leave one residual degree of freedom, which can make it arbitrarily narrow): `chi2_red` reports
    them. NaN interval when a point lacks an error; NaN slope with fewer than 2 distinct x."""
    x, y, e, d = (np.asarray(v, dtype=float) for v in (x, y, se, dof))
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, e, d = x[ok], y[ok], e[ok], d[ok]
    nan = math.nan
    if len(np.unique(x)) < 2:
        return Slope(nan, nan, nan, nan, nan, nan, nan, len(x))
    c = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
    slope, intercept = float(c @ y), float(y.mean() - c @ y * x.mean())
    if not (np.all(np.isfinite(e) & (e >= 0)) and np.all(d >= 1)):
        return Slope(slope, nan, nan, nan, nan, intercept, nan, len(x))
    parts = c**2 * e**2
    err, nu = float(math.sqrt(parts.sum())), _ws_dof(parts, d)
    half = t975(nu) * err if err > 0 else 0.0
    resid = y - (intercept + slope * x)
    chi2 = float(np.sum((resid / e) ** 2) / (len(x) - 2)) if len(x) > 2 and np.all(e > 0) else nan
    return Slope(slope, err, nu, slope - half, slope + half, intercept, chi2, len(x))


def slope_per_doubling(x: Sequence[float], y: Sequence[float], se: Sequence[float], dof: Sequence[float]) -> Slope:
    """The change of y per doubling of x (x > 0): `linear_slope` on log2 x. Defined from 2 widths on, and
    model-free: it needs no residual degrees of freedom."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return linear_slope(np.where(x > 0, np.log2(x), np.nan), y, se, dof)


def fit_pure_power_law(
    x: Sequence[float], y: Sequence[float], yerr: Sequence[float] | None = None, dof: Sequence[float] | None = None
) -> PowerFit:
    """`y = a·x^(-b)` (c = 0) as a line in log-log space (`linear_slope` on ln x, ln y): for 4–5 widths, too few
    for the asymptote of `fit_power_law`. b's error and interval come from each point's own error (`yerr`, with
    `dof`), carried to ln y as yerr/y; without errors b has none. Not converged (with `reason`) below
    LOGLOG_MIN_WIDTHS distinct x, when a value is not positive, or when one is within 1/MAX_REL_ERROR of its own
    error of 0 (its logarithm is then undetermined)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    e = np.full_like(y, np.nan) if yerr is None else np.asarray(yerr, float)
    d = np.full_like(y, np.nan) if dof is None else np.asarray(dof, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y, e, d = x[ok], y[ok], e[ok], d[ok]
    if len(np.unique(x)) < LOGLOG_MIN_WIDTHS:
        return _failed(len(x), f"needs >= {LOGLOG_MIN_WIDTHS} widths")
    if (y <= 0).any():
        return _failed(len(x), "a·w^-b needs positive values")
    if (e > MAX_REL_ERROR * y).any():
        return _failed(len(x), f"a value is within {1 / MAX_REL_ERROR:g} standard errors of 0: no logarithm")
    fit = linear_slope(np.log(x), np.log(y), e / y, d)
    lo, hi = -fit.hi, -fit.lo
    return PowerFit(a=math.exp(fit.intercept), b=-fit.value, c=0.0, a_stderr=math.nan, b_stderr=fit.se,
                    c_stderr=0.0, n=len(x), dof=len(x) - 2, chi2_red=fit.chi2_red, weighted=math.isfinite(fit.se),
                    converged=True, reason="", ci_dof=fit.dof if math.isfinite(lo + hi) else math.nan)  # fmt: skip


@dataclass(frozen=True)
class Plateau:
    """Where a measure stops improving along x (`plateau`). `at`/`value` are NaN unless `reached`; `worsens`: some
    larger x is worse than `at` by more than the spread."""

    at: float
    value: float
    reached: bool
    n: int
    x_max: float
    spread_missing: bool  # some spread was NaN and counted as 0 (any improvement then counts)
    reason: str = ""
    x_min: float = math.nan
    worsens: bool = False

    @property
    def label(self) -> str:
        """What the measure does along x, in words: `plateau at 64` (improves up to 64, then by no more than the
        spread), `still improving` (by more than the spread at the largest x), `no trend within spread` (nothing
        improves on the smallest x by more than the spread, nothing is worse by more), `worsens` (nothing improves
        on the smallest x and something is worse by more than the spread), `worsens after 64` (improves up to 64,
        then gets worse by more than the spread), `n/a` (fewer than 2 points)."""
        if self.n < 2:
            return "n/a"
        if not self.reached:
            return "still improving"
        first = self.at == self.x_min
        if self.worsens:
            return "worsens" if first else f"worsens after {self.at:g}"
        return "no trend within spread" if first else f"plateau at {self.at:g}"


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
    beyond it) or there are fewer than 2 points. `worsens`: a larger x is worse than the plateau's by more than
    the same threshold (a barrier that rises with width reads `worsens`, never `plateau at` its smallest width).
    """
    x, m, s = (np.asarray(v, dtype=float) for v in (x, mean, spread))
    ok = np.isfinite(x) & np.isfinite(m)
    order = np.argsort(x[ok], kind="stable")
    x, m, s = x[ok][order], m[ok][order], s[ok][order]
    missing = bool(np.isnan(s).any())
    s = np.nan_to_num(s, nan=0.0)
    n, x_max = len(x), float(x[-1]) if len(x) else math.nan
    if n < 2:
        return Plateau(math.nan, math.nan, False, n, x_max, missing, "needs >= 2 points", x_max)
    sign = 1.0 if higher_is_better else -1.0
    for i in range(n - 1):
        later = x > x[i]
        gain, threshold = sign * (m[later] - m[i]), np.maximum(s[i], s[later])
        if np.all(gain <= threshold):
            worse = bool(np.any(-gain > threshold))
            return Plateau(float(x[i]), float(m[i]), True, n, x_max, missing, "", float(x[0]), worse)
    return Plateau(math.nan, math.nan, False, n, x_max, missing, "still improving at the largest x", float(x[0]))


def theory_reference(x: Sequence[float], y_at_xmin: float, exponent: float = 0.5) -> np.ndarray:
    """The reference line `y_at_xmin·(x/x_min)^-exponent`, anchored at the smallest x: the O(w^-1/2) decay that
    theory predicts for the barrier of aligned two-layer networks, drawn beside the measured barriers."""
    x = np.asarray(x, dtype=float)
    return y_at_xmin * (x / np.nanmin(x)) ** (-exponent)


def _higher_is_better(measure: str) -> bool:
    """Accuracies (`*acc`) improve upwards; barriers, losses, gaps and sharpness downwards."""
    return measure.rsplit("/", 1)[-1].endswith("acc")


def _errors(g: pd.DataFrame, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """(se, dof) of each cell's mean: the table's `_se`/`_dof` (the endpoint jackknife for pair measures), or
    std/√n with n − 1 for a table without them."""
    if f"{stem}_se" in g and f"{stem}_dof" in g:
        return g[f"{stem}_se"].to_numpy(float), g[f"{stem}_dof"].to_numpy(float)
    std, n = g[f"{stem}_std"].to_numpy(float), g[f"{stem}_n"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return std / np.sqrt(n), n - 1


def width_exponent(x: np.ndarray, mean: np.ndarray, se: np.ndarray, dof: np.ndarray) -> tuple[str, PowerFit]:
    """(model, fit) of the exponent the widths support: `a·w^-b + c` from POWER_LAW_MIN_WIDTHS widths (weighted by
    the cells' standard errors), else (or when it fails) `a·w^-b` in log-log from LOGLOG_MIN_WIDTHS, else none
    (model '', the fit not converged, `reason` saying why)."""
    widths = len(np.unique(x[np.isfinite(x) & np.isfinite(mean)]))
    tried = ""
    if widths >= POWER_LAW_MIN_WIDTHS:
        p = fit_power_law(x, mean, se)
        if p.converged:
            return "a·w^-b + c", p
        tried = f"a·w^-b + c: {p.reason}; "
    if widths >= LOGLOG_MIN_WIDTHS:
        p = fit_pure_power_law(x, mean, se, dof)
        if p.converged:
            return "a·w^-b", dataclasses.replace(p, reason=tried.removesuffix("; "))
        return "", dataclasses.replace(p, reason=f"{tried}a·w^-b: {p.reason}")
    return "", _failed(widths, f"{widths} widths: no exponent (needs >= {LOGLOG_MIN_WIDTHS}); see the slope")


def _width_columns(x: np.ndarray, mean: np.ndarray, se: np.ndarray, dof: np.ndarray) -> dict[str, object]:
    """The fit columns of a group along width: the exponent the widths support and the change per doubling."""
    model, p = width_exponent(x, mean, se, dof)
    lo, hi = p.b_ci95
    sl = slope_per_doubling(x, mean, se, dof)
    return {"model": model, "a": p.a, "b": p.b, "b_stderr": p.b_stderr, "b_lo": lo, "b_hi": hi, "c": p.c,
            "chi2_red": p.chi2_red, "converged": p.converged, "reason": p.reason, "slope": sl.value,
            "slope_lo": sl.lo, "slope_hi": sl.hi}  # fmt: skip


def _no_fit(axis: str) -> dict[str, object]:
    row: dict[str, object] = {"model": ""}
    row |= dict.fromkeys(("a", "b", "b_stderr", "b_lo", "b_hi", "c", "chi2_red"), math.nan)
    return row | {"converged": False, "reason": f"no fit along {axis}"} | dict.fromkeys(SLOPE_COLUMNS, math.nan)


SLOPE_COLUMNS = ("slope", "slope_lo", "slope_hi")


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
    `spread`: the plateau's noise scale, `std` (sample std over endpoints/pairs) or `stderr` (the cells' `_se`).
    `fit` None: along width only: the exponent the widths support (`width_exponent`) and the change per doubling
    (`slope_per_doubling`), both with 95 % intervals from the cells' own standard errors (`_se`, `_dof`).

    Columns: the group keys, `measure, axis, n_cells` (completed cells), `n_points` (finite values: used by the fit,
    the plateau and τ), `model` (`a·w^-b + c`, `a·w^-b` or '' for no exponent), `a, b, b_stderr, b_lo, b_hi`
    (95 %), `c, chi2_red, converged, reason`, `slope, slope_lo, slope_hi` (change per doubling, 95 %),
    `plateau_at, plateau_reached, plateau_value, plateau` (label: `plateau at 64`, `still improving`, `worsens`,
    `worsens after 64`, `no trend within spread`, `n/a`), `spread_missing, tau, tau_n, tau_p` (Kendall τ of the
    measure vs the axis, its points and two-sided p; NaN under 3 points).
    """
    stem = measure.removesuffix("_mean")
    hib = _higher_is_better(stem) if higher_is_better is None else higher_is_better
    fit = axis == "width" if fit is None else fit
    done = completed(table)
    keys = [k for k in (by or ()) if k != axis and k in done]
    keys += [k for k in varied(table) if k != axis and k not in keys]
    groups = done.groupby(keys, dropna=False, sort=False) if keys else [((), done)]
    rows = []
    for key, g in groups:
        g = g.sort_values(axis)
        x, mean, std = (g[c].to_numpy(dtype=float) for c in (axis, f"{stem}_mean", f"{stem}_std"))
        se, dof = _errors(g, stem)
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row |= {"measure": stem, "axis": axis, "n_cells": len(g), "n_points": int(np.isfinite(mean).sum())}
        row |= _width_columns(x, mean, se, dof) if fit else _no_fit(axis)
        pl = plateau(x, mean, std if spread == "std" else se, hib)
        row |= {"plateau_at": pl.at, "plateau_reached": pl.reached, "plateau_value": pl.value, "plateau": pl.label}
        tau, n, p = kendall_test(x, mean)
        rows.append(row | {"spread_missing": pl.spread_missing, "tau": tau, "tau_n": n, "tau_p": p})
    out = pd.DataFrame(rows)
    if keys and len(out):
        with contextlib.suppress(TypeError):  # mixed types in a key column: keep the table's order
            out = out.sort_values(keys, kind="stable", ignore_index=True)
    return out

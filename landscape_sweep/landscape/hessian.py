"""Curvature of the mean loss: top Hessian eigenvalues, Hutchinson trace, SLQ spectral density.

All estimates run on `HessianOperator` (exact HVPs, one data pass per product, see `hvp.py`), in
`mode="eval"` by default (BN running statistics, no dropout), over the parameters selected by
`param_filter`, and leave the caller's model exactly as it was. Randomness comes from a local
`torch.Generator(seed)` drawn on the CPU, so a seed gives the same result on any device.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from landscape_sweep.checks import check_choice, check_int, check_positive

from ._core import Data, LossFn, ParamFilter, default_loss, preserved
from .hvp import MODES, HessianOperator, make_generator, rademacher

EIG_METHODS = ("lanczos", "power")
# Lanczos builds at least this many Krylov vectors before it tests convergence (fewer only when the space is smaller).
# Parlett's refined bound judges a Ritz value by its gap to the other Ritz values, and a short Krylov space has not
# seen the spectrum yet: from a start vector nearly orthogonal to the top eigenvector it "converged" after 5 products
# on the second eigenvalue (mnist1d MLP 1x16: 2.8235 reported, dense top two 3.2875 / 2.8223). Measured on trained
# mnist1d MLPs (1x16, 2x64, 4x256; 3 endpoints each, 20-40 random starts): without a minimum 4 of 360 runs stopped on
# the wrong eigenvalue, with 10 or 20 none, and each run then costs the 20 products instead of 6-12.
MIN_KRYLOV = 20
Eigenpairs = tuple[Tensor, Tensor, dict]  # eigenvalues (float64, descending), vectors (k, dim), solver info


def _tridiag(alphas: list[float], betas: list[float]) -> Tensor:
    """The Lanczos tridiagonal matrix (float64) from diagonal `alphas` and off-diagonal `betas`."""
    a = torch.tensor(alphas, dtype=torch.float64)
    b = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
    return torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)


def _orthogonalize(w: Tensor, Q: Tensor) -> Tensor:
    """Remove from `w` its components along the orthonormal rows of `Q` (twice: enough in floating point)."""
    for _ in range(2):
        w = w - (Q @ w) @ Q
    return w


def _random_unit(dim: int, gen: torch.Generator, like: Tensor) -> Tensor:
    v = torch.randn(dim, generator=gen, dtype=torch.float64).to(like.device, like.dtype)
    return v / v.norm()


def _error_bounds(theta: Tensor, S: Tensor, beta: float) -> Tensor:
    """Eigenvalue error bound of each Ritz value: `min(r, r^2 / gap)` (Parlett), `r = |beta s_mi|`.

    `r` is the residual `||H y_i - theta_i y_i||` of the Ritz pair, `gap` the distance to the nearest other
    Ritz value (with one Ritz value, or a tie, the plain residual).
    """
    res = (beta * S[-1]).abs()
    gap = (theta[:, None] - theta[None, :]).abs().fill_diagonal_(math.inf).min(1).values
    refined = torch.where(gap.isfinite() & (gap > 0), res**2 / gap.clamp_min(1e-300), res)
    return torch.minimum(res, refined)


def lanczos_top(
    op: HessianOperator, k: int, tol: float, max_iter: int, gen: torch.Generator, min_iter: int = 0
) -> Eigenpairs:
    """Top-k (algebraic) Ritz pairs by Lanczos with full reorthogonalization.

    Stops when every top-k Ritz value's error bound (`_error_bounds`) is below `tol * max|theta|`, i.e.
    relative to the spectral norm, but never before `min_iter` products (a short Krylov space can look converged on
    a lower eigenvalue: `MIN_KRYLOV`), or after `max_iter` products. On an invariant subspace (beta ~ 0) it
    restarts with a fresh random vector orthogonal to the basis, which also finds repeated eigenvalues.
    Returns eigenvalues (float64, descending), vectors `(k, dim)` and `{"error_bounds", "converged",
    "num_hvps"}`.
    """
    steps = min(max_iter, op.dim)
    Q = op.w.new_zeros(steps, op.dim)
    q = _random_unit(op.dim, gen, op.w)
    alphas: list[float] = []
    betas: list[float] = []
    converged = False
    for j in range(steps):
        Q[j] = q
        w = op.matvec(q)
        alphas.append(float(q @ w))
        w = _orthogonalize(w, Q[: j + 1])
        beta = float(w.norm())
        theta, S = torch.linalg.eigh(_tridiag(alphas, betas))
        scale = float(theta.abs().max())
        err, invariant = _error_bounds(theta, S, beta), beta <= 1e-10 * max(scale, 1e-300)
        if j + 1 >= max(k, min_iter) and not invariant and bool((err[-k:] <= tol * scale).all()):
            converged = True
            break
        if j + 1 == steps:
            converged = steps == op.dim
            break
        if invariant:  # invariant subspace found: restart orthogonally
            w, beta = _orthogonalize(_random_unit(op.dim, gen, op.w), Q[: j + 1]), 0.0
            q = w / w.norm()
        else:
            q = w / beta
        betas.append(beta)
    m = len(alphas)
    vecs = S.flip(1)[:, :k].T.to(Q.dtype) @ Q[:m]
    info = {"error_bounds": err.flip(0)[:k].tolist(), "converged": converged, "num_hvps": m}
    return theta.flip(0)[:k], vecs, info


def _power_round(op: HessianOperator, vals: list, vecs: list, tol: float, max_iter: int, gen: torch.Generator) -> tuple:
    """One deflated power iteration: `(lambda, v, residual of the deflated operator, converged, products)`."""
    v, lam = _random_unit(op.dim, gen, op.w), None
    for i in range(max_iter):
        w = op.matvec(v)
        for lj, uj in zip(vals, vecs):
            w = w - lj * (uj @ v) * uj
        new = float(v @ w)
        res = float((w - new * v).norm())
        v = w / w.norm()
        if lam is not None and abs(new - lam) <= tol * max(abs(new), 1e-300):
            return new, v, res, True, i + 1
        lam = new
    return lam, v, res, False, max_iter


def power_top(op: HessianOperator, k: int, tol: float, max_iter: int, gen: torch.Generator) -> Eigenpairs:
    """Top-k eigenpairs by power iteration with deflation (largest *magnitude* each round, as PyHessian).

    Each round iterates `(H - sum_j lambda_j u_j u_j^T) v` until the Rayleigh quotient changes by less
    than `tol` relative, at most `max_iter` products. Returned sorted descending, with `{"error_bounds"`
    (residual of the last Rayleigh quotient: an eigenvalue of the deflated operator lies that close),
    `"converged"` (every round), `"num_hvps"}`.
    """
    vals: list[float] = []
    vecs: list[Tensor] = []
    bounds, converged, count = [], True, 0
    for _ in range(k):
        lam, v, res, ok, n = _power_round(op, vals, vecs, tol, max_iter, gen)
        vals.append(lam)
        vecs.append(v)
        bounds.append(res)
        converged, count = converged and ok, count + n
    order = sorted(range(k), key=lambda i: -vals[i])
    info = {"error_bounds": [bounds[i] for i in order], "converged": converged, "num_hvps": count}
    return torch.tensor([vals[i] for i in order], dtype=torch.float64), torch.stack([vecs[i] for i in order]), info


def hessian_eigenvalues(
    model: nn.Module,
    data: Data,
    k: int = 1,
    *,
    method: str = "lanczos",
    tol: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
    min_iter: int = MIN_KRYLOV,
    return_vectors: bool = False,
    return_info: bool = False,
    loss_fn: LossFn = default_loss,
    param_filter: ParamFilter | None = None,
    mode: str = "eval",
    hvp_method: str = "rev-rev",
) -> list[float] | tuple:
    """Top-`k` eigenvalues (largest first, algebraic) of the Hessian of the mean loss over `data`.

    `method="lanczos"` (default; full reorthogonalization, `max_iter` HVPs at most, one data pass each)
    or `"power"` (power iteration with deflation; finds the largest-*magnitude* eigenvalues, `max_iter`
    per eigenvalue). `tol`: Lanczos error bound relative to the spectral norm / power relative change.
    `min_iter`: Lanczos tests convergence only from this many products on (`MIN_KRYLOV`; at most `max_iter` and the
    dimension), so that it cannot stop on a lower eigenvalue before the Krylov space has seen the top one.
    Returns `eigs`, then `(k, dim)` unit eigenvectors over the flattened selected parameters
    (`select_params` order) if `return_vectors`, then an info dict if `return_info`: `residuals`
    (`||H v_i - lambda_i v_i||`, measured with k more HVPs in one pass), `error_bounds` (the solver's bound
    on each eigenvalue's error), `converged`, `num_hvps` (the solver's products). Without `return_info` a
    run that did not converge warns.
    """
    check_choice("method", method, EIG_METHODS)
    check_positive("tol", tol)
    check_choice("mode", mode, MODES)
    with preserved(model, mode):
        op = HessianOperator(model, data, loss_fn, param_filter, hvp_method)
        check_int("k", k, 1, op.dim)
        check_int("max_iter", max_iter, k if method == "lanczos" else 1)
        check_int("min_iter", min_iter, 0)
        if method == "lanczos":
            vals, vecs, info = lanczos_top(op, k, tol, max_iter, make_generator(seed), min(min_iter, max_iter))
        else:
            vals, vecs, info = power_top(op, k, tol, max_iter, make_generator(seed))
        if return_info:
            res = op.matmat(vecs) - vals.to(vecs)[:, None] * vecs
            info = {"residuals": res.norm(dim=1).double().tolist(), **info}
    if not (info["converged"] or return_info):
        warnings.warn(f"hessian_eigenvalues: {method} did not reach tol={tol} in max_iter={max_iter}", stacklevel=2)
    out = ([float(v) for v in vals],) + ((vecs.detach(),) if return_vectors else ()) + ((info,) if return_info else ())
    return out[0] if len(out) == 1 else out


def hessian_trace(
    model: nn.Module,
    data: Data,
    *,
    num_probes: int = 100,
    probes_per_pass: int = 10,
    seed: int = 0,
    loss_fn: LossFn = default_loss,
    param_filter: ParamFilter | None = None,
    mode: str = "eval",
    hvp_method: str = "rev-rev",
) -> tuple[float, float]:
    """Hutchinson estimate of the Hessian trace: `(mean, stderr)` over `num_probes` Rademacher probes.

    `probes_per_pass` probes share one data pass (their HVPs reuse each batch's gradient graph), so the
    cost per probe falls; the probes drawn do not depend on it. stderr = sample std / sqrt(num_probes).
    """
    check_int("num_probes", num_probes, 2)
    check_int("probes_per_pass", probes_per_pass, 1)
    check_choice("mode", mode, MODES)
    with preserved(model, mode):
        op = HessianOperator(model, data, loss_fn, param_filter, hvp_method)
        gen, samples = make_generator(seed), []
        while len(samples) < num_probes:
            V = rademacher((min(probes_per_pass, num_probes - len(samples)), op.dim), gen, op.w)
            samples += (V * op.matmat(V)).sum(1).double().tolist()
    s = torch.tensor(samples, dtype=torch.float64)
    return float(s.mean()), float(s.std() / math.sqrt(num_probes))


def slq_lanczos(op: HessianOperator, V: Tensor, steps: int) -> list[tuple[Tensor, Tensor]]:
    """Lanczos from each unit row of `V` in lockstep (one data pass per step for all rows).

    Returns per row the Gauss quadrature `(nodes, weights)` of its spectral measure `v^T f(H) v`: Ritz
    values and squared first components of the Ritz vectors. A row whose Krylov space closes early
    (beta ~ 0) stops there; its quadrature is then exact.
    """
    p, steps = V.shape[0], min(steps, op.dim)
    Q = V.new_zeros(steps, p, op.dim)
    A, B = torch.zeros(p, steps, dtype=torch.float64), torch.zeros(p, steps, dtype=torch.float64)
    length = [steps] * p
    q, scale = V, torch.zeros(p, dtype=torch.float64)
    for j in range(steps):
        Q[j] = q
        w = op.matmat(q)
        A[:, j] = (q * w).sum(1).double().cpu()
        for _ in range(2):
            w = w - torch.einsum("jp,jpd->pd", torch.einsum("jpd,pd->jp", Q[: j + 1], w), Q[: j + 1])
        b = w.norm(dim=1)
        B[:, j] = b.double().cpu()
        scale = torch.maximum(scale, A[:, j].abs() + B[:, j])
        for r in range(p):
            if length[r] == steps and B[r, j] <= 1e-10 * scale[r]:
                length[r] = j + 1
        q = torch.where(b[:, None] > 0, w / b.clamp_min(1e-300)[:, None], torch.zeros_like(w))
    out = []
    for r in range(p):
        m = length[r]
        theta, S = torch.linalg.eigh(_tridiag(A[r, :m].tolist(), B[r, : m - 1].tolist()))
        out.append((theta, S[0] ** 2))
    return out


def hessian_spectrum(
    model: nn.Module,
    data: Data,
    *,
    num_runs: int = 4,
    num_steps: int = 64,
    runs_per_pass: int = 4,
    seed: int = 0,
    loss_fn: LossFn = default_loss,
    param_filter: ParamFilter | None = None,
    mode: str = "eval",
    hvp_method: str = "rev-rev",
) -> tuple[np.ndarray, np.ndarray]:
    """Hessian spectral density by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    Each of `num_runs` runs starts Lanczos (`num_steps` steps, full reorthogonalization) from a
    normalized Rademacher vector; its Ritz values are quadrature nodes with weights summing to 1. Returns
    all runs' `(nodes, weights)` concatenated, weights divided by `num_runs` (total 1), as float64 numpy
    arrays. `runs_per_pass` runs share each data pass. Smooth for plotting with `spectral_density`.
    """
    check_int("num_runs", num_runs, 1)
    check_int("num_steps", num_steps, 1)
    check_int("runs_per_pass", runs_per_pass, 1)
    check_choice("mode", mode, MODES)
    with preserved(model, mode):
        op = HessianOperator(model, data, loss_fn, param_filter, hvp_method)
        gen, quads = make_generator(seed), []
        while len(quads) < num_runs:
            V = rademacher((min(runs_per_pass, num_runs - len(quads)), op.dim), gen, op.w)
            quads += slq_lanczos(op, V / math.sqrt(op.dim), num_steps)
    nodes = torch.cat([t for t, _ in quads]).numpy()
    weights = torch.cat([w for _, w in quads]).numpy() / num_runs
    return nodes, weights


def spectral_density(
    nodes: np.ndarray | list[float],
    weights: np.ndarray | list[float],
    grid: np.ndarray | None = None,
    sigma: float | None = None,
    num_points: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-kernel smoothing of SLQ `(nodes, weights)` for plotting: returns `(grid, density)`.

    `sigma` defaults to 1% of the node range (or 1e-3 * max(1, |node|) when all nodes coincide); the
    default grid spans the nodes +- 5 sigma with `num_points` points. Each kernel integrates to its weight.
    """
    x, w = np.asarray(nodes, dtype=np.float64).ravel(), np.asarray(weights, dtype=np.float64).ravel()
    if x.size == 0 or x.shape != w.shape:
        raise ValueError(f"nodes/weights: got sizes {x.size} and {w.size}; need equal, non-empty")
    if sigma is None:
        span = float(x.max() - x.min())
        sigma = 0.01 * span if span > 0 else 1e-3 * max(1.0, float(np.abs(x).max()))
    check_positive("sigma", sigma)
    if grid is None:
        grid = np.linspace(x.min() - 5 * sigma, x.max() + 5 * sigma, num_points)
    grid = np.asarray(grid, dtype=np.float64)
    kernel = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return grid, kernel @ w

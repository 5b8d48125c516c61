"""Worst-case and average-case sharpness `L(w + delta) - L(w)` of the mean loss over `data`.

Worst case: projected gradient ascent on `delta` inside the ball `||delta|| <= rho` (l2 or linf),
full-batch over `data`, keeping the highest loss seen (a lower bound on the true maximum). Adaptive
(Kwon et al. 2021 ASAM; Andriushchenko et al. 2023): `delta = |w| * u` element-wise with `||u|| <= rho`,
so the ball scales with each weight and is invariant to layer rescaling (weights at exactly 0 are not
perturbed).

Average case: `delta = sigma * z` with `z ~ N(0, I)` (l2) or uniform in `[-1, 1]^d` (linf), where the
per-coordinate scale `sigma` is `rho` (plain) or `rho * |w|` element-wise (adaptive, as in Andriushchenko
et al. 2023). By default each sample is an antithetic pair `(L(w + delta) + L(w - delta)) / 2 - L(w)`:
the first-order term `g . delta`, which has mean 0 but dominates the spread of one-sided samples at a
trained point (a non-zero gradient), cancels exactly. For a twice-differentiable loss (GELU, tanh, ...) what
remains is the second-order signal, `E = rho^2 tr(H) / 2 + O(rho^4)` for plain Gaussian `delta` (`tr(D H D)` with
`D = diag|w|` if adaptive; times 1/3 for the linf box). ReLU networks are only piecewise smooth: a perturbation
that moves a unit across its kink changes the loss at first order in |delta| on that unit, which no Hessian sees
(inside a linear region the ReLUs contribute nothing to it), so there `E` exceeds `rho^2 tr(H) / 2` and the excess
grows relative to it as rho shrinks (the ratio rose from 1.25 at rho = 1e-2 to 1.68 at 1e-4 on a small trained ReLU
MLP, while a GELU one stayed at 1.01 +- 0.02): the average case is the curvature of the Gaussian-smoothed loss at
scale rho, kinks included. On a quadratic loss every pair equals `delta^T H delta / 2`, so it is >= 0 wherever `H`
is PSD. `antithetic=False` gives the one-sided `L(w + delta) - L(w)` (same expectation for a
quadratic, far noisier) for comparison. A pair costs two data passes.

Scales: a Gaussian with std `rho` has norm about `rho * sqrt(d)`, so at an equal radius compare the l2
worst case at `rho` with the average case at `rho / sqrt(d)`; the linf box is the linf ball itself.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from landscape_sweep.checks import check_choice, check_int, check_positive, fail

from ._core import Data, LossFn, ParamFilter, default_loss, preserved
from .hvp import MODES, HessianOperator, make_generator

KINDS = ("worst", "average")
NORMS = ("l2", "linf")


def _project(u: Tensor, rho: float, norm: str) -> Tensor:
    if norm == "linf":
        return u.clamp(-rho, rho)
    return u * min(1.0, rho / max(float(u.norm()), 1e-300))


def _worst(op: HessianOperator, scale: Tensor, rho, norm, steps, step_size, random_start, gen) -> float:
    """Highest mean loss found by `steps` projected (normalized / sign) gradient-ascent steps."""
    if not random_start:
        u = torch.zeros_like(op.w)
    elif norm == "l2":
        u = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.w)
        u = u * (rho / u.norm())
    else:
        u = ((torch.rand(op.dim, generator=gen, dtype=torch.float64) * 2 - 1) * rho).to(op.w)
    best = -math.inf
    for _ in range(steps):
        loss, g = op.loss_and_grad(op.w + scale * u)
        best = max(best, loss)
        gu = scale * g  # gradient w.r.t. u
        step = gu / max(float(gu.norm()), 1e-300) if norm == "l2" else gu.sign()
        u = _project(u + step_size * step, rho, norm)
    return max(best, op.loss(op.w + scale * u))


def average_samples(
    op: HessianOperator,
    scale: Tensor,
    rho: float,
    norm: str,
    num_samples: int,
    gen: torch.Generator,
    antithetic: bool = True,
) -> Tensor:
    """Per-sample values (float64) of average-case sharpness at `op.w`, perturbation `scale * rho * z`.

    Antithetic: `(L(w + delta) + L(w - delta)) / 2 - L(w)` per pair (two passes); else `L(w + delta) - L(w)`.
    `z` is drawn in float64 on the CPU from `gen`, so a seed gives the same draws on any device.
    """
    out = []
    for _ in range(num_samples):
        if norm == "l2":
            z = torch.randn(op.dim, generator=gen, dtype=torch.float64)
        else:
            z = torch.rand(op.dim, generator=gen, dtype=torch.float64) * 2 - 1
        delta = scale * (rho * z).to(op.w)
        up = op.loss(op.w + delta)
        out.append((up + op.loss(op.w - delta)) / 2 - op.loss0 if antithetic else up - op.loss0)
    return torch.tensor(out, dtype=torch.float64)


def _check_args(kind: str, rho: float, norm: str, steps: int, num_samples: int, stderr: bool, mode: str) -> None:
    check_choice("kind", kind, KINDS)
    check_choice("norm", norm, NORMS)
    check_choice("mode", mode, MODES)
    check_positive("rho", rho)
    if kind == "worst":
        check_int("steps", steps)
    else:
        check_int("num_samples", num_samples, low=2)
    if stderr and kind != "average":
        fail("return_stderr", stderr, f"only for kind='average' (got kind={kind!r})")


def sharpness(
    model: nn.Module,
    data: Data,
    kind: str = "worst",
    rho: float = 0.05,
    *,
    adaptive: bool = False,
    norm: str = "l2",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    num_samples: int = 32,
    antithetic: bool = True,
    seed: int = 0,
    return_stderr: bool = False,
    loss_fn: LossFn = default_loss,
    param_filter: ParamFilter | None = None,
    mode: str = "eval",
) -> float | tuple[float, float]:
    """Sharpness `L(w + delta) - L(w)` of the mean loss over `data` (see the module docstring).

    `kind="worst"`: `steps` ascent steps of size `step_size` (default `2.5 * rho / steps`; normalized
    gradient for l2, sign for linf) from a random point of the ball (`random_start`, default) or from 0;
    `steps + 1` data passes. `kind="average"`: `rho` is the per-coordinate std (times `|w|` if adaptive);
    mean over `num_samples` antithetic pairs (`2 * num_samples + 1` passes; `antithetic=False`: one-sided
    samples); with `return_stderr=True` returns `(mean, stderr)`, stderr over samples (average only).
    Seeded by `seed` (local generator).
    """
    _check_args(kind, rho, norm, steps, num_samples, return_stderr, mode)
    if kind == "worst":
        step_size = check_positive("step_size", 2.5 * rho / steps if step_size is None else step_size)
    with preserved(model, mode), torch.no_grad():
        op = HessianOperator(model, data, loss_fn, param_filter)
        scale = op.w.abs() if adaptive else torch.ones_like(op.w)
        gen = make_generator(seed)
        if kind == "worst":
            return _worst(op, scale, rho, norm, steps, step_size, random_start, gen) - op.loss0
        diffs = average_samples(op, scale, rho, norm, num_samples, gen, antithetic)
    mean, stderr = float(diffs.mean()), float(diffs.std() / math.sqrt(num_samples))
    return (mean, stderr) if return_stderr else mean

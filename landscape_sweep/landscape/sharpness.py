"""Worst-case and average-case sharpness `L(w + delta) - L(w)` of the mean loss over `data`.

Worst case: projected gradient ascent on `delta` inside the ball `||delta|| <= rho` (l2 or linf),
full-batch over `data`, keeping the highest loss seen (a lower bound on the true maximum). Adaptive
(Kwon et al. 2021 ASAM; Andriushchenko et al. 2023): `delta = |w| * u` element-wise with `||u|| <= rho`,
so the ball scales with each weight and is invariant to layer rescaling (weights at exactly 0 are not
perturbed). Average case: `delta ~ N(0, rho^2 I)` (l2) or uniform in `[-rho, rho]^d` (linf), times `|w|`
if adaptive, averaged over `num_samples`.

Scales: a Gaussian with std `rho` has norm about `rho * sqrt(d)`, so at an equal radius compare the l2
worst case at `rho` with the average case at `rho / sqrt(d)`; the linf box is the linf ball itself.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._core import Data, LossFn, ParamFilter, default_loss, preserved
from .hvp import MODES, HessianOperator, check_choice, make_generator

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


def _average(op: HessianOperator, scale: Tensor, rho, norm, num_samples, gen) -> Tensor:
    """`L(w + delta) - L(w)` for `num_samples` random perturbations (float64)."""
    out = []
    for _ in range(num_samples):
        if norm == "l2":
            d = torch.randn(op.dim, generator=gen, dtype=torch.float64) * rho
        else:
            d = (torch.rand(op.dim, generator=gen, dtype=torch.float64) * 2 - 1) * rho
        out.append(op.loss(op.w + scale * d.to(op.w)) - op.loss0)
    return torch.tensor(out, dtype=torch.float64)


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
    seed: int = 0,
    return_stderr: bool = False,
    loss_fn: LossFn = default_loss,
    param_filter: ParamFilter | None = None,
    mode: str = "eval",
) -> float | tuple[float, float]:
    """Sharpness `L(w + delta) - L(w)` of the mean loss over `data` (see the module docstring).

    `kind="worst"`: `steps` ascent steps of size `step_size` (default `2.5 * rho / steps`; normalized
    gradient for l2, sign for linf) from a random point of the ball (`random_start`, default) or from 0;
    `steps + 1` data passes. `kind="average"`: mean over `num_samples` perturbations; with
    `return_stderr=True` returns `(mean, stderr)` (average only). Seeded by `seed` (local generator).
    """
    check_choice("kind", kind, KINDS)
    check_choice("norm", norm, NORMS)
    check_choice("mode", mode, MODES)
    if not (isinstance(rho, (int, float)) and rho > 0 and math.isfinite(rho)):
        raise ValueError(f"rho: got {rho!r}; must be a finite number > 0")
    if kind == "worst" and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps: got {steps!r}; must be an integer >= 1")
    if kind == "average" and (not isinstance(num_samples, int) or num_samples < 2):
        raise ValueError(f"num_samples: got {num_samples!r}; must be an integer >= 2")
    if return_stderr and kind != "average":
        raise ValueError(f"return_stderr: only for kind='average' (got kind={kind!r})")
    step_size = 2.5 * rho / steps if step_size is None else step_size
    if not step_size > 0:
        raise ValueError(f"step_size: got {step_size!r}; must be > 0")
    with preserved(model, mode), torch.no_grad():
        op = HessianOperator(model, data, loss_fn, param_filter)
        scale = op.w.abs() if adaptive else torch.ones_like(op.w)
        gen = make_generator(seed)
        if kind == "worst":
            return _worst(op, scale, rho, norm, steps, step_size, random_start, gen) - op.loss0
        diffs = _average(op, scale, rho, norm, num_samples, gen)
    mean, stderr = float(diffs.mean()), float(diffs.std() / math.sqrt(num_samples))
    return (mean, stderr) if return_stderr else mean

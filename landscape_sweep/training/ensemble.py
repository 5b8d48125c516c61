"""A vectorised ensemble: K models of one architecture trained as one (`endpoints.parallel=vmap`).

The K models' parameters and buffers are stacked along a leading model axis (`torch.func.stack_module_state`);
the forward pass is `torch.vmap` over `torch.func.functional_call`, so every model sees its own batch, keeps its
own BatchNorm running statistics (updated in place on its slice) and gets its own gradient from one backward of
the summed per-model losses. Everything else mirrors `LitClassifier` + `SAM` + `SWA` per model:

- the optimizer is the config's torch optimizer over the stacked tensors: SGD (momentum, nesterov, weight decay),
  Adam and AdamW are elementwise, so each model's slice gets exactly the update it would get alone, and the LR
  schedule (shared) is the same LambdaLR / SWALR;
- SAM/ASAM: the ascent `e = rho * g / ||g||` with the norm taken per model (`per_model_norm`), the second forward
  with BN statistics left untouched (it runs on a copy of the buffers);
- gradient clipping by the per-model total norm (as `clip_grad_norm_` on one model);
- SWA: a per-model equal-weight average with torch's own SWA averaging functions.

Functions here are pure over tensors where they can be (`per_model_norm`, `sam_perturbation`, `clip_coefficients`);
`Ensemble` holds the stacked state and runs one optimizer step on a stacked batch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state
from torch.optim.swa_utils import get_swa_avg_fn, get_swa_multi_avg_fn
from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices


def _expand(v: Tensor, like: Tensor) -> Tensor:
    """(K,) -> (K, 1, ..., 1) broadcasting over `like` (K, ...)."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def per_model_norm(tensors: Sequence[Tensor]) -> Tensor:
    """The 2-norm of each model's slice over all `tensors` (each (K, ...)): a (K,) vector.

    Computed as one model's norm is (SAM, `clip_grad_norm_`): the norm of the per-tensor norms.
    """
    norms = [
        torch.linalg.vector_norm(t.flatten(1), dim=1, dtype=torch.promote_types(t.dtype, torch.float32))
        for t in tensors
    ]
    return torch.linalg.vector_norm(torch.stack(norms), dim=0)


def sam_perturbation(params: Sequence[Tensor], grads: Sequence[Tensor], rho: float, adaptive: bool) -> list[Tensor]:
    """SAM's ascent `e` per model: `rho * g / ||g||` (ASAM: `rho * w^2 g / || |w| g ||`), norms per model."""
    scaled = [p.abs() * g if adaptive else g for p, g in zip(params, grads)]
    norm = per_model_norm(scaled)
    norm = norm.clamp_min(torch.finfo(norm.dtype).tiny)  # zero gradient: e = 0, not NaN
    scale = rho / norm
    return [(p * p * g if adaptive else g) * _expand(scale, g).to(p.dtype) for p, g in zip(params, grads)]


def clip_coefficients(grads: Sequence[Tensor], max_norm: float) -> Tensor:
    """Per-model factor of `clip_grad_norm_(max_norm)`: `min(1, max_norm / (||g|| + 1e-6))`, a (K,) vector."""
    return (max_norm / (per_model_norm(grads) + 1e-6)).clamp(max=1.0)


def swa_average_(average: Sequence[Tensor], current: Sequence[Tensor], n_averaged: int) -> None:
    """Add `current` to the equal-weight average of `n_averaged` snapshots, with torch's SWA functions (the ones
    `AveragedModel` picks for the device), so each slice matches one model's `AveragedModel`."""
    n = torch.tensor(n_averaged, device=average[0].device)
    if average[0].device.type in _get_foreach_kernels_supported_devices():
        get_swa_multi_avg_fn()(list(average), list(current), n)
    else:
        avg_fn = get_swa_avg_fn()
        for a, c in zip(average, current):
            a.copy_(avg_fn(a, c, n))


class Ensemble:
    """K models of one architecture as stacked parameters (leaf tensors, (K, ...)) and buffers.

    `models` must share their architecture; they are copied (the originals are left untouched).
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ValueError("models=[]: an ensemble needs at least one model")
        params, buffers = stack_module_state(list(models))
        self.size = len(models)
        self.params: dict[str, Tensor] = params
        self.buffers: dict[str, Tensor] = buffers
        self.template = copy.deepcopy(models[0])  # a real module: one model's structure for `module(k)`
        self.base = copy.deepcopy(models[0]).to("meta")  # stateless: functional_call supplies every tensor

    # --- forward ---------------------------------------------------------------------------------------
    def logits(self, x: Tensor, *, buffers: dict[str, Tensor] | None = None, shared_input: bool = False) -> Tensor:
        """(K, B, classes) logits of every model on its own batch `x` (K, B, ...) or on one batch (B, ...)."""

        def one(p: dict[str, Tensor], b: dict[str, Tensor], xk: Tensor) -> Tensor:
            return functional_call(self.base, (p, b), (xk,))

        in_dims = (0, 0, None if shared_input else 0)
        return torch.vmap(one, in_dims=in_dims)(self.params, self.buffers if buffers is None else buffers, x)

    def train(self, mode: bool = True) -> Ensemble:
        self.base.train(mode)
        return self

    @torch.no_grad()
    def evaluate(self, batches: Sequence[tuple[Tensor, Tensor]] | object) -> tuple[Tensor, Tensor]:
        """Per-model mean loss and accuracy (eval mode, BN running statistics) over shared batches."""
        was = self.base.training
        self.base.eval()
        loss_sum = acc_sum = None
        count = 0
        try:
            for x, y in batches:  # type: ignore[attr-defined]
                logits = self.logits(x, shared_input=True)
                yy = y.expand(self.size, -1)
                loss = torch.vmap(F.cross_entropy)(logits, yy) * y.shape[0]
                acc = (logits.argmax(-1) == yy).float().sum(1)
                loss_sum = loss if loss_sum is None else loss_sum + loss
                acc_sum = acc if acc_sum is None else acc_sum + acc
                count += y.shape[0]
        finally:
            self.base.train(was)
        return loss_sum / count, acc_sum / count

    # --- one optimizer step -----------------------------------------------------------------------------
    def _loss(self, x: Tensor, y: Tensor, buffers: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        logits = self.logits(x, buffers=buffers)
        return torch.vmap(F.cross_entropy)(logits, y), logits

    def _backward(self, loss: Tensor, clip: float | None) -> list[Tensor]:
        params = list(self.params.values())
        for p in params:
            p.grad = None
        loss.sum().backward()  # models are independent: d(sum)/d(model k) = d(loss k)/d(model k)
        grads = [p.grad for p in params]
        if clip is not None:
            with torch.no_grad():
                coef = clip_coefficients(grads, clip)
                for g in grads:
                    g.mul_(_expand(coef, g).to(g.dtype))
        return grads

    def step(
        self,
        x: Tensor,
        y: Tensor,
        optimizer: torch.optim.Optimizer,
        *,
        rho: float | None = None,
        adaptive: bool = False,
        clip: float | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One training step of every model on its batch `(x[k], y[k])`; returns per-model loss and accuracy at w.

        SAM/ASAM when `rho` is set (two forward/backward passes, the second at w + e with BN statistics kept).
        A model whose loss is not finite gets a garbage update: the caller stops using it (models never mix).
        """
        self.base.train()
        loss, logits = self._loss(x, y)
        acc = (logits.detach().argmax(-1) == y).float().mean(1)
        grads = self._backward(loss, clip)
        if rho is not None:
            params = list(self.params.values())
            with torch.no_grad():
                moves = sam_perturbation(params, grads, rho, adaptive)
                saved = [p.detach().clone() for p in params]  # restore by copy: (w + e) - e != w
                for p, e in zip(params, moves):
                    p.add_(e)
            try:
                frozen = {k: b.clone() for k, b in self.buffers.items()}  # BN stats: first pass only
                second, _ = self._loss(x, y, frozen)
                self._backward(second, clip)
            finally:
                with torch.no_grad():
                    for p, w in zip(params, saved):
                        p.copy_(w)
        optimizer.step()
        return loss.detach(), acc

    # --- one model out of the stack ---------------------------------------------------------------------
    def state_dict(self, k: int, params: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Model k's state dict (copies), optionally with other stacked parameters (e.g. an SWA average)."""
        params = self.params if params is None else params
        out = {name: t[k].detach().clone() for name, t in params.items()}
        out.update({name: t[k].detach().clone() for name, t in self.buffers.items()})
        return out

    def module(self, k: int, params: dict[str, Tensor] | None = None) -> nn.Module:
        """Model k as an ordinary module (a copy, on the ensemble's device)."""
        model = copy.deepcopy(self.template)
        model.load_state_dict(self.state_dict(k, params))
        return model

    @classmethod
    def restack(cls, template: nn.Module, states: Sequence[dict[str, Tensor]]) -> Ensemble:
        """An ensemble from per-model state dicts (a resumed run)."""
        models = []
        for state in states:
            model = copy.deepcopy(template)
            model.load_state_dict(state)
            models.append(model)
        return cls(models)

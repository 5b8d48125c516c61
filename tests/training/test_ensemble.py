"""The vmap ensemble's math against one model at a time: per-model norms, SAM/ASAM ascent, gradient clipping."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch import nn

from landscape_sweep.models import build_model
from landscape_sweep.training.ensemble import Ensemble, clip_coefficients, per_model_norm, sam_perturbation
from landscape_sweep.training.sam import SAM, frozen_bn_stats


def _models(k: int = 3, norm: str = "batchnorm") -> list[nn.Module]:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(build_model("mlp", (12,), 5, 2, 8, norm=norm, activation="relu"))
    return out


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()


def test_per_model_norm_is_each_models_norm():
    tensors = [torch.randn(3, 4, 5), torch.randn(3, 7)]
    expected = [torch.cat([t[k].flatten() for t in tensors]).norm() for k in range(3)]
    torch.testing.assert_close(per_model_norm(tensors), torch.stack(expected))


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_perturbation_is_per_model(adaptive):
    models, x, y = _models(), torch.randn(3, 16, 12), torch.randint(0, 5, (3, 16))
    ens = Ensemble(models)
    ens.train()
    loss, _ = ens._loss(x, y)
    grads = ens._backward(loss, None)
    moves = sam_perturbation(list(ens.params.values()), grads, 0.5, adaptive)
    for k, model in enumerate(models):
        _grads(model, x[k], y[k])
        opt = SAM(model.parameters(), base="sgd", rho=0.5, adaptive=adaptive, lr=0.1)
        before = [p.detach().clone() for p in model.parameters()]
        opt._ascent()
        for (name, _), p, w, e in zip(model.named_parameters(), model.parameters(), before, moves):
            torch.testing.assert_close(e[k], p.detach() - w, rtol=1e-5, atol=1e-7, msg=name)


def test_clip_coefficients_match_clip_grad_norm():
    models, x, y = _models(norm="none"), torch.randn(3, 16, 12), torch.randint(0, 5, (3, 16))
    ens = Ensemble(models)
    loss, _ = ens._loss(x, y)
    grads = ens._backward(loss, 0.05)
    for k, model in enumerate(models):
        _grads(model, x[k], y[k])
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        for p, g in zip(model.parameters(), grads):
            torch.testing.assert_close(g[k], p.grad, rtol=1e-5, atol=1e-8)
    assert clip_coefficients([torch.zeros(2, 3)], 1.0).tolist() == [1.0, 1.0]


def _sam_closure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float):
    """LitClassifier's closure: the second (SAM) evaluation keeps BN statistics; gradients clipped each time."""
    calls = []

    def closure():
        model.zero_grad(set_to_none=True)
        with frozen_bn_stats(model) if calls else contextlib.nullcontext():
            loss = nn.functional.cross_entropy(model(x), y)
        calls.append(loss)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        return loss

    return closure


@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_stacked_sam_step_equals_each_models_step(base):
    """Elementwise optimizers on stacked tensors update each slice as they update that model alone (BN too)."""
    models, x, y = _models(), torch.randn(3, 16, 12), torch.randint(0, 5, (3, 16))
    extra = {"momentum": 0.9, "nesterov": True} if base == "sgd" else {}
    kw = {"lr": 0.1 if base == "sgd" else 1e-3, "weight_decay": 1e-3, **extra}  # Adam: sign-like steps
    cls = torch.optim.SGD if base == "sgd" else torch.optim.AdamW
    ens = Ensemble(copy.deepcopy(models))
    opt = cls(list(ens.params.values()), **kw)
    for _ in range(3):
        ens.step(x, y, opt, rho=0.05, clip=1.0)
    for k, model in enumerate(models):
        sam = SAM(model.parameters(), base=cls, rho=0.05, **kw)
        for _ in range(3):
            sam.step(_sam_closure(model, x[k], y[k], 1.0))
        for name, t in ens.state_dict(k).items():
            torch.testing.assert_close(t, model.state_dict()[name], rtol=1e-5, atol=1e-6, msg=name)

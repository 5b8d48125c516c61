"""Exact HVPs against `torch.autograd.functional.hessian` (tiny models and references: tests/_support)."""

import math

import pytest
import torch
from torch import nn

from landscape_sweep.landscape._core import exclude_norm_and_bias, select_params
from landscape_sweep.landscape.hvp import HessianOperator, hvp
from tests._support.hessian import (
    SIZES,
    assert_unchanged,
    dirty,
    exact_hessian,
    make_data,
    make_model,
    single_thread,  # noqa: F401 (autouse fixture)
    snapshot,
)


@pytest.mark.parametrize("method", ["rev-rev", "fwd-rev"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("bn", [False, True])
def test_hvp_matches_exact_hessian(kind, bn, method):
    model, data = make_model(kind, bn), make_data()
    H = exact_hessian(model, data)
    V = torch.randn(4, H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hvp(model, data, V[0], method=method), H @ V[0], rtol=0, atol=1e-10)
    with torch.no_grad():
        op = HessianOperator(model, data, method=method)
        assert torch.allclose(op.matmat(V), V @ H, rtol=0, atol=1e-10)


def test_hvp_param_filter_dict_input_and_train_mode_bn():
    model, data = make_model("cnn", bn=True), make_data()
    keep = exclude_norm_and_bias(model)
    H = exact_hessian(model, data, keep)
    like = select_params(model, keep)
    v = {n: torch.randn_like(p) for n, p in like.items()}
    flat = torch.cat([t.reshape(-1) for t in v.values()])
    assert torch.allclose(hvp(model, data, v, param_filter=keep), H @ flat, rtol=0, atol=1e-10)
    # train-mode BN: batch statistics per batch, weighted by batch size
    ones = torch.ones(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    model.train()
    ref = sum(len(y) * (exact_hessian(model, [(x, y)]) @ ones) for x, y in data)
    model.eval()
    out = hvp(model, data, ones, mode="train")
    assert torch.allclose(out, ref / sum(SIZES), rtol=0, atol=1e-10)


def test_loss_and_grad_are_the_sample_mean():
    model, data = make_model("mlp", bn=True), make_data()
    x, y = torch.cat([b[0] for b in data]), torch.cat([b[1] for b in data])
    loss = nn.functional.cross_entropy(model(x), y)
    ref = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])
    with torch.no_grad():
        op = HessianOperator(model, data)
        val, g = op.loss_and_grad()
    assert math.isclose(val, loss.item(), rel_tol=1e-12) and math.isclose(op.loss0, loss.item(), rel_tol=1e-12)
    assert torch.allclose(g, ref, rtol=0, atol=1e-12)


def test_hvp_leaves_model_unchanged():
    model, data = dirty(make_model("cnn", bn=True)), make_data()
    snap = snapshot(model)
    dim = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for mode in ("eval", "train"):
        hvp(model, data, torch.ones(dim, dtype=torch.float64), mode=mode)
        assert_unchanged(model, snap)


def test_hvp_bad_input():
    model, data = make_model("mlp", bn=False), make_data()
    v = torch.ones(53, dtype=torch.float64)
    with pytest.raises(ValueError, match="^method='exact': must be one of fwd-rev, rev-rev$"):
        hvp(model, data, v, method="exact")
    with pytest.raises(ValueError, match="^mode='test': must be one of eval, train$"):
        hvp(model, data, v, mode="test")
    with pytest.raises(ValueError, match="v: got 52 entries"):
        hvp(model, data, v[:-1])
    with pytest.raises(ValueError, match="data"):
        hvp(model, [], v)
    frozen = make_model("mlp", bn=False).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        hvp(frozen, data, v)
    bad = [(x.clone().fill_(math.inf), y) for x, y in data]
    with pytest.raises(ValueError, match="non-finite"):
        hvp(model, bad, v)

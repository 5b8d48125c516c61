"""Exact HVPs against `torch.autograd.functional.hessian`; shared tiny models and references for the
Hessian and sharpness tests."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape_sweep.landscape._core import exclude_norm_and_bias, select_params
from landscape_sweep.landscape.hvp import HessianOperator, hvp

SIZES = (7, 3, 13)


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny ops on a shared 2-core machine run ~10x faster on one thread; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)  # batches of different sizes: the weighting by batch size matters


def make_model(kind: str, bn: bool, seed: int = 0) -> nn.Module:
    """Tiny float64 MLP / Conv1d net; BN running statistics set by a few train-mode passes."""
    torch.manual_seed(seed)
    norm = (lambda c: nn.BatchNorm1d(c)) if bn else (lambda c: nn.Identity())
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(6, 5), norm(5), nn.Tanh(), nn.Linear(5, 3))
    else:
        model = nn.Sequential(
            nn.Unflatten(1, (1, 6)), nn.Conv1d(1, 2, 3), norm(2), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)
        )
    model = model.double()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 6, dtype=torch.float64))
    return model.eval()


def make_data(seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(SIZES), 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (sum(SIZES),), generator=g)
    return list(zip(x.split(SIZES), y.split(SIZES)))


def exact_hessian(model, data, param_filter=None, loss_fn=nn.functional.cross_entropy) -> torch.Tensor:
    """Dense Hessian of the mean loss over all samples (one concatenated batch, the model's mode)."""
    x, y = torch.cat([b[0] for b in data]), torch.cat([b[1] for b in data])
    like = select_params(model, param_filter)
    rest = {n: p.detach() for n, p in model.named_parameters() if n not in like}
    rest.update(dict(model.named_buffers()))
    w = torch.cat([p.reshape(-1) for p in like.values()])

    def f(flat):
        parts = dict(zip(like, flat.split([p.numel() for p in like.values()])))
        params = {n: parts[n].view_as(p) for n, p in like.items()}
        return loss_fn(functional_call(model, {**rest, **params}, (x,)), y)

    return torch.autograd.functional.hessian(f, w)


class Quadratic(nn.Module):
    """L(w) = 0.5 (w - c)^T A (w - c) on any data (via `quadratic_loss(A, c)`): known Hessian A."""

    def __init__(self, w0: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w0.clone().double())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


def quadratic_loss(A: torch.Tensor, c: torch.Tensor | None = None):
    c = torch.zeros(A.shape[0], dtype=A.dtype) if c is None else c
    return lambda w, y: 0.5 * (w - c) @ A @ (w - c)


def snapshot(model: nn.Module):
    """Everything `preserved` promises to restore."""
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [p.requires_grad for p in model.parameters()],
    )


def assert_unchanged(model: nn.Module, snap) -> None:
    state, modes, grads, req = snapshot(model)
    assert state.keys() == snap[0].keys()
    assert all(torch.equal(state[k], snap[0][k]) for k in state)
    assert modes == snap[1] and req == snap[3]
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, snap[2]))


def dirty(model: nn.Module) -> nn.Module:
    """Put the model in a state a careless function would disturb: train mode, grads, a frozen param."""
    model.train()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    next(model.parameters()).requires_grad_(False)
    return model


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

"""Tiny float64 models, data and references shared by the HVP, Hessian and sharpness tests."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape_sweep.landscape._core import select_params

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


DATA = [(torch.zeros(2, 1), torch.zeros(2)), (torch.zeros(5, 1), torch.zeros(5))]  # for quadratics


def known_matrix(eigs, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T

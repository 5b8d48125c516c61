"""Parametric curves between two models in weight space (Garipov et al. 2018) and their training.

A `Curve` holds K = num_bends + 2 control points as flat vectors: the frozen endpoints theta_a, theta_b
and the trainable bends. The point at t is `sum_k w_k(t) * control_k` where w are Bernstein
polynomials (Bezier, degree K - 1) or hat functions (PolyChain: piecewise linear through the bends at
t = k / (K - 1)). With zero bends both are the straight segment, which is how linear paths are built.
The point's weights are plugged into one copy of the architecture with `torch.func.functional_call`.

The varied state is every parameter plus any floating buffer that is not a BatchNorm statistic (those
are recomputed at each evaluated point, never interpolated).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ._core import Data, LossFn, batches, check_finite, default_loss, has_batchnorm, model_device
from .interpolation import bn_buffer_names, check_pair, recompute_bn

CURVE_KINDS = ("bezier", "polychain")


def varied_names(model: nn.Module) -> list[tuple[str, torch.Size]]:
    """(name, shape) of the state that a path varies: parameters and non-BN floating buffers."""
    skip = set(bn_buffer_names(model))
    return [(k, v.shape) for k, v in model.state_dict().items() if k not in skip and v.is_floating_point()]


def flat_state(model: nn.Module, names: list[tuple[str, torch.Size]]) -> Tensor:
    sd = model.state_dict()
    return torch.cat([sd[k].detach().reshape(-1) for k, _ in names]).clone()


def unflatten_points(flat: Tensor, names: list[tuple[str, torch.Size]]) -> dict[str, Tensor]:
    """Split `(P, D)` stacked flat points into `{name: (P, *shape)}` views."""
    out, i = {}, 0
    for k, shape in names:
        n = math.prod(shape)
        out[k] = flat[:, i : i + n].view(flat.shape[0], *shape)
        i += n
    return out


def curve_coefficients(t: Tensor, kind: str, num_bends: int) -> Tensor:
    """Weights `(P, K)` of the K = num_bends + 2 control points at the P values `t`."""
    if kind not in CURVE_KINDS:
        raise ValueError(f"kind: '{kind}' is not offered; choose one of {list(CURVE_KINDS)}")
    t = t.reshape(-1, 1)
    n = num_bends + 1
    k = torch.arange(n + 1, dtype=t.dtype, device=t.device)
    if kind == "bezier":
        binom = torch.tensor([math.comb(n, int(i)) for i in k], dtype=t.dtype, device=t.device)
        return binom * t**k * (1 - t) ** (n - k)
    return (1 - (t * n - k).abs()).clamp_min(0)


class Curve(nn.Module):
    """A Bezier or PolyChain curve from `model_a` (t=0) to `model_b` (t=1) with `num_bends` bends.

    Bends start evenly spaced on the segment. `curve(x, t)` is the forward pass of the model at t
    (use train mode for training: BN then uses batch statistics); `model_at(t, bn_data)` returns a
    standalone model with recomputed BN statistics. The inputs are copied, never modified.
    """

    def __init__(self, model_a: nn.Module, model_b: nn.Module, kind: str = "bezier", num_bends: int = 1):
        super().__init__()
        check_pair(model_a, model_b)
        if kind not in CURVE_KINDS:
            raise ValueError(f"kind: '{kind}' is not offered; choose one of {list(CURVE_KINDS)}")
        if not isinstance(num_bends, int) or num_bends < 0:
            raise ValueError(f"num_bends: got {num_bends!r}; need an integer >= 0")
        self.kind, self.num_bends = kind, num_bends
        self.model = copy.deepcopy(model_a).requires_grad_(False)  # architecture + non-varied state
        self.names = varied_names(model_a)
        theta_a, theta_b = flat_state(model_a, self.names), flat_state(model_b, self.names)
        if theta_a.dtype != theta_b.dtype:
            raise ValueError(f"model_b: dtype {theta_b.dtype} differs from model_a's {theta_a.dtype}")
        self.register_buffer("theta_a", theta_a)
        self.register_buffer("theta_b", theta_b)
        s = torch.arange(1, num_bends + 1, dtype=theta_a.dtype, device=theta_a.device) / (num_bends + 1)
        self.bends = nn.Parameter(torch.lerp(theta_a, theta_b, s[:, None].expand(-1, theta_a.numel())))

    def controls(self) -> Tensor:
        """The `(K, D)` control points: theta_a, the bends, theta_b."""
        return torch.cat([self.theta_a[None], self.bends, self.theta_b[None]])

    def coefficients(self, t: Tensor | float | Iterable[float]) -> Tensor:
        t = torch.as_tensor(t, dtype=self.theta_a.dtype, device=self.theta_a.device)
        return curve_coefficients(t, self.kind, self.num_bends)

    def points(self, t: Tensor | float | Iterable[float]) -> dict[str, Tensor]:
        """Varied state at the values `t`, stacked: `{name: (P, *shape)}`."""
        return unflatten_points(self.coefficients(t) @ self.controls(), self.names)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        point = {k: v[0] for k, v in self.points(t).items()}
        state = self.model.state_dict()  # BN stats passed as copies: train mode must not alter the template
        point.update({k: state[k].clone() for k in bn_buffer_names(self.model)})
        return functional_call(self.model, point, (x,), strict=False)

    @torch.no_grad()
    def model_at(self, t: float, bn_data: Data | None = None) -> nn.Module:
        """A standalone copy of the model at `t`, BN statistics recomputed over `bn_data` (needed with BN)."""
        if has_batchnorm(self.model) and bn_data is None:
            raise ValueError("bn_data: the model has BatchNorm; pass data to recompute its statistics at t")
        model = copy.deepcopy(self.model)
        model.load_state_dict({k: v[0] for k, v in self.points(float(t)).items()}, strict=False)
        model.requires_grad_(True)
        return recompute_bn(model, bn_data) if bn_data is not None else model

    @torch.no_grad()
    def control_model(self, k: int) -> nn.Module:
        """A copy of the model at control point k (0 = model_a, K-1 = model_b; BN stats of model_a)."""
        model = copy.deepcopy(self.model)
        flat = self.controls()[k][None]
        model.load_state_dict({n: v[0] for n, v in unflatten_points(flat, self.names).items()}, strict=False)
        return model.requires_grad_(True)


def _minibatches(data: Data, batch_size: int) -> Iterable[tuple[Tensor, Tensor]]:
    """One epoch: a single `(x, y)` pair is reshuffled into minibatches; other data is used as given."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
        idx = torch.randperm(len(y)).to(y.device)
        return [(x[i], y[i]) for i in idx.split(batch_size)]
    return batches(data)


def fit_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    train_data: Data,
    kind: str = "bezier",
    num_bends: int = 1,
    epochs: int = 20,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    seed: int = 0,
    loss_fn: LossFn = default_loss,
) -> Curve:
    """Train a curve's bends on the training loss at one `t ~ U(0, 1)` per minibatch (Garipov et al.).

    SGD (momentum, weight decay on the bends) with a cosine learning-rate decay; the endpoints stay
    frozen and the model is in train mode (BN uses batch statistics). A single `(x, y)` pair is
    shuffled into minibatches of `batch_size` each epoch. Seeded; the global RNG is left untouched.
    Returns the curve (eval mode) with `curve.history` = mean training loss per epoch.
    """
    if kind not in CURVE_KINDS:
        raise ValueError(f"kind: '{kind}' is not offered; choose one of {list(CURVE_KINDS)}")
    if not isinstance(num_bends, int) or num_bends < 1:
        raise ValueError(f"num_bends: got {num_bends!r}; need an integer >= 1")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs/batch_size: got {epochs}/{batch_size}; both must be >= 1")
    device = model_device(model_a)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        curve = Curve(model_a, model_b, kind, num_bends).train()
        opt = torch.optim.SGD([curve.bends], lr=lr, momentum=momentum, weight_decay=weight_decay)
        steps = epochs * max(1, sum(1 for _ in _minibatches(train_data, batch_size)))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        curve.history = []
        for _ in range(epochs):
            total, n = torch.zeros((), device=device), 0
            for x, y in _minibatches(train_data, batch_size):
                x, y = x.to(device), y.to(device)
                loss = loss_fn(curve(x, torch.rand(()).item()), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.detach() * len(y)
                n += len(y)
            curve.history.append(check_finite(float(total) / n, "fit_curve training loss"))
    return curve.eval()

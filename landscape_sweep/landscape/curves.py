"""Parametric curves between two models in weight space (Garipov et al. 2018) and their training.

A `Curve` holds K = num_bends + 2 control points as flat vectors: the frozen endpoints theta_a, theta_b
and the trainable bends. The point at t is `sum_k w_k(t) * control_k` where w are Bernstein
polynomials (Bezier, degree K - 1) or hat functions (PolyChain: piecewise linear through the bends at
t = k / (K - 1)). With zero bends both are the straight segment, which is how linear paths are built.
The point's weights are plugged into one copy of the architecture with `torch.func.functional_call`.

The varied state is every parameter plus any floating buffer that is not a BatchNorm statistic (those
are recomputed at each evaluated point, never interpolated).

`fit_curve` trains the bends until the training loss along the curve plateaus (capped; see there): an
undertrained curve reports the optimiser's barrier, not the landscape's. The rule and the budgets were measured
with benchmarks/curve_budget.py: a curve called converged must keep its barrier when refitted 3x longer.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ._core import (
    Batch,
    Data,
    Layout,
    LossFn,
    batches,
    check_finite,
    default_loss,
    flatten,
    has_batchnorm,
    model_device,
    unflatten_like,
)
from .interpolation import bn_buffer_names, check_pair, recompute_bn

CURVE_KINDS = ("bezier", "polychain")


def varied_names(model: nn.Module) -> Layout:
    """(name, shape) of the state that a path varies: parameters and non-BN floating buffers."""
    skip = set(bn_buffer_names(model))
    return [(k, v.shape) for k, v in model.state_dict().items() if k not in skip and v.is_floating_point()]


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
        self.bn_names = bn_buffer_names(model_a)
        theta_a, theta_b = flatten(model_a.state_dict(), self.names), flatten(model_b.state_dict(), self.names)
        if theta_a.dtype != theta_b.dtype:
            raise ValueError(f"model_b: dtype {theta_b.dtype} differs from model_a's {theta_a.dtype}")
        self.register_buffer("theta_a", theta_a)
        self.register_buffer("theta_b", theta_b)
        s = torch.arange(1, num_bends + 1, dtype=theta_a.dtype, device=theta_a.device) / (num_bends + 1)
        self.bends = nn.Parameter(torch.lerp(theta_a, theta_b, s[:, None].expand(-1, theta_a.numel())))
        self.history: list[float] = []  # set by fit_curve: mean training loss per epoch
        self.fit: dict = {}  # set by fit_curve: see _fit_record

    def controls(self) -> Tensor:
        """The `(K, D)` control points: theta_a, the bends, theta_b."""
        return torch.cat([self.theta_a[None], self.bends, self.theta_b[None]])

    def coefficients(self, t: Tensor | float | Iterable[float]) -> Tensor:
        t = torch.as_tensor(t, dtype=self.theta_a.dtype, device=self.theta_a.device)
        return curve_coefficients(t, self.kind, self.num_bends)

    def points(self, t: Tensor | float | Iterable[float]) -> dict[str, Tensor]:
        """Varied state at the values `t`, stacked: `{name: (P, *shape)}`."""
        return unflatten_like(self.coefficients(t) @ self.controls(), self.names)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        coeffs = self.coefficients(t).reshape(-1)
        point = unflatten_like(coeffs @ self.controls(), self.names)
        state = dict(self.model.named_buffers())  # BN stats passed as copies: train mode must not alter them
        point.update({k: state[k].clone() for k in self.bn_names})
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
        model.load_state_dict(unflatten_like(self.controls()[k], self.names), strict=False)
        return model.requires_grad_(True)


def _is_pair(data: Data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)


def epoch_batches(data: Data, batch_size: int, epoch: int, generator: torch.Generator) -> Iterable[Batch]:
    """The minibatches of training epoch `epoch`, reshuffled every epoch where `data` allows it.

    One `(x, y)` pair: a fresh permutation from `generator` (CPU, the caller's local stream) split into
    minibatches of `batch_size`. A loader with `set_epoch` (TensorLoader, or a DataLoader whose sampler
    has it): `set_epoch(epoch)`, so its own seeded order and augmentation change per epoch. Anything else
    is used as given (a DataLoader with shuffle=True reshuffles itself).
    """
    if _is_pair(data):
        x, y = data
        idx = torch.randperm(len(y), generator=generator).to(y.device)
        return [(x[i], y[i]) for i in idx.split(batch_size)]
    for obj in (data, getattr(data, "sampler", None)):
        if callable(getattr(obj, "set_epoch", None)):
            obj.set_epoch(epoch)  # type: ignore[union-attr]
            break
    return data  # type: ignore[return-value]


def stratified_t(n: int, generator: torch.Generator) -> Tensor:
    """`n` values of t, one uniform in each of n equal strata of [0, 1], in random order.

    Each is marginally U(0, 1), as Garipov et al.'s one t per minibatch, but an epoch covers the curve
    evenly: the epoch-mean loss is then far less noisy, which the plateau test relies on.
    """
    return (torch.randperm(n, generator=generator) + torch.rand(n, generator=generator)).double() / n


def plateaued(
    checks: list[tuple[int, float]], tol: float | None, patience: float, min_epochs: int = 0, floor: float = 0.0
) -> bool:
    """True when the curve's barrier has stopped falling. `checks`: `(epoch, barrier estimate)`, oldest first.

    Over the last `patience` (a fraction) of the epochs run so far, no estimate fell more than `max(tol * best,
    floor)` below the best estimate before them, and the latest is within that margin of the best (so a rise, a
    spike or a climb, is never a plateau). Never before `min_epochs`, and only with two estimates on either side.

    The barrier itself is watched, not the training loss: the loss is a mean over t and flattens while the curve's
    worst point still improves (a pair of mnist1d MLPs whose epoch loss had stalled at 100 epochs still lost 40 % of
    its barrier by 300). The patience grows with the run: curves improve slowly for long, so a fixed patience that
    suits epoch 30 stops at epoch 80 a curve that would still lose half its barrier; no progress over the last third
    of the run means little left to gain from a run three times as long. `tol=None` never plateaus.
    """
    if tol is None or not checks or checks[-1][0] < min_epochs:
        return False
    edge = checks[-1][0] - patience * checks[-1][0]
    before, recent = [b for e, b in checks if e <= edge], [b for e, b in checks if e > edge]
    if len(before) < 2 or len(recent) < 2:
        return False
    best = min(before)
    margin = max(tol * abs(best), floor)
    return min(recent) >= best - margin and recent[-1] <= best + margin


PROBE_SAMPLES = 512  # training samples on which the barrier is estimated while a curve trains
PROBE_POINTS = 9  # t values of each estimate (both endpoints included)


def probe_batch(data: Data, size: int = PROBE_SAMPLES) -> Batch:
    """The first `size` training samples (one batch): the fixed data of the barrier estimates during a fit."""
    xs, ys, n = [], [], 0
    for x, y in data if not _is_pair(data) else [data]:
        xs.append(x[: size - n])
        ys.append(y[: size - n])
        n += len(ys[-1])
        if n >= size:
            break
    return torch.cat(xs), torch.cat(ys)


def decay_epochs(stable: int, decay_frac: float) -> int:
    """Length of the final LR decay after `stable` constant-LR epochs: `ceil(decay_frac * stable)`, >= 1."""
    return max(1, math.ceil(decay_frac * stable)) if decay_frac > 0 else 0


def _lr_factor(pos: float, warmup: int, decay: tuple[float, int] | None) -> float:
    """LR multiplier at fractional epoch `pos`: linear warmup, constant, linear decay to 0 over `decay`."""
    if decay is not None:
        start, length = decay
        return max(0.0, 1.0 - (pos - start) / length)
    return min(1.0, pos / warmup) if warmup > 0 else 1.0


class _Trainer:
    """The state of one curve fit: SGD on the bends, the data, the local RNG stream, the loss history and the
    barrier estimates (`checks`: every `window` epochs of the constant-LR phase, on `probe_batch`)."""

    def __init__(
        self, curve: Curve, data: Data, opt: torch.optim.Optimizer, seed: int, loss_fn: LossFn, batch_size: int
    ):
        self.curve, self.data, self.opt, self.loss_fn, self.batch_size = curve, data, opt, loss_fn, batch_size
        self.lr = opt.param_groups[0]["lr"]
        self.device = model_device(curve)
        self.generator = torch.Generator().manual_seed(seed)  # data order and t: reproducible, global RNG untouched
        self.history: list[float] = []
        self.checks: list[tuple[int, float]] = []
        self.probe = tuple(t.to(self.device) for t in probe_batch(data))
        self.steps = 0
        self.last_steps: int | None = None

    @torch.no_grad()
    def barrier(self) -> float:
        """The curve's train loss barrier (vs the chord) on the probe batch at PROBE_POINTS values of t, in the mode
        it trains in (BatchNorm on the batch's statistics)."""
        x, y = self.probe
        ts = torch.linspace(0, 1, PROBE_POINTS, dtype=torch.float64)
        losses = torch.stack([self.loss_fn(self.curve(x, float(t)), y).double() for t in ts]).cpu()
        return float((losses - torch.lerp(losses[0], losses[-1], ts)).max())

    def epoch(self, factor: Callable[[float], float]) -> None:
        """One epoch, one `t ~ U(0, 1)` per minibatch (stratified); the LR of a step is `lr * factor(epoch pos)`."""
        e = len(self.history)
        data = epoch_batches(self.data, self.batch_size, e, self.generator)
        n_steps = len(data) if hasattr(data, "__len__") else self.last_steps  # type: ignore[arg-type]
        ts = stratified_t(n_steps, self.generator) if n_steps else None
        total, n, k = torch.zeros((), dtype=torch.float64, device=self.device), 0, 0
        for x, y in data:
            t = float(ts[k]) if ts is not None and k < len(ts) else float(torch.rand((), generator=self.generator))
            for group in self.opt.param_groups:
                group["lr"] = self.lr * factor(e + (min(1.0, (k + 1) / n_steps) if n_steps else 1.0))
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            loss = self.loss_fn(self.curve(x, t), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.detach().double() * len(y)
            n, k = n + len(y), k + 1
        if n == 0:
            raise ValueError("train_data: an epoch yielded no batches")
        self.history.append(check_finite(float(total) / n, "fit_curve training loss"))
        self.steps, self.last_steps = self.steps + k, k

    def run(
        self, max_epochs: int, tol: float | None, rule: tuple[int, float, int, float], warmup: int, decay_frac: float
    ) -> int | None:
        """Warmup/stable epochs until a plateau or the last stable epoch the cap allows, then the decay.

        Returns the epoch count at the plateau (None: the cap came first; the decay then fills the cap).
        """
        stable_cap = max_epochs
        while stable_cap > 0 and stable_cap + decay_epochs(stable_cap, decay_frac) > max_epochs:
            stable_cap -= 1
        plateau = None
        while len(self.history) < stable_cap and plateau is None:
            self.epoch(lambda pos: _lr_factor(pos, warmup, None))
            window, patience, min_epochs, floor = rule
            if tol is not None and len(self.history) % window == 0:
                self.checks.append((len(self.history), self.barrier()))
                plateau = len(self.history) if plateaued(self.checks, tol, patience, min_epochs, floor) else None
        start = len(self.history)
        length = decay_epochs(start, decay_frac) if plateau is not None else max_epochs - start
        for _ in range(length):
            self.epoch(lambda pos: _lr_factor(pos, warmup, (start, length)))
        return plateau


def _check_fit_args(
    kind: str, num_bends: int, max_epochs: int, rule: tuple[int, float, int, float], tol: float | None, args: dict
) -> None:
    if kind not in CURVE_KINDS:
        raise ValueError(f"kind: '{kind}' is not offered; choose one of {list(CURVE_KINDS)}")
    window, patience, min_epochs, floor = rule
    if not floor >= 0:
        raise ValueError(f"floor: got {floor!r}; need a number >= 0 (loss units)")
    if not (isinstance(patience, (int, float)) and 0 < patience <= 1):
        raise ValueError(f"patience: got {patience!r}; need a fraction of the epochs run, in (0, 1]")
    checks = [("num_bends", num_bends, 1), ("max_epochs", max_epochs, 1), ("window", window, 1)]
    for name, value, low in checks + [("min_epochs", min_epochs, 0)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: got {value!r}; need an integer >= {low}")
    if tol is not None and not tol >= 0:
        raise ValueError(f"tol: got {tol!r}; need a number >= 0 or None (no early stop)")
    if not (args["lr"] > 0 and args["batch_size"] >= 1 and args["warmup_epochs"] >= 0):
        raise ValueError(f"lr/batch_size/warmup_epochs: got {args}; need lr > 0, batch_size >= 1, warmup >= 0")
    if not 0 <= args["decay_frac"] <= 1:
        raise ValueError(f"decay_frac: got {args['decay_frac']!r}; need a number in [0, 1]")


def fit_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    train_data: Data,
    kind: str = "bezier",
    num_bends: int = 1,
    *,
    max_epochs: int = 400,
    tol: float | None = 0.05,
    window: int = 5,
    patience: float = 1 / 3,
    min_epochs: int = 40,
    floor: float = 0.01,
    lr: float = 0.2,
    batch_size: int = 128,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    warmup_epochs: int = 0,
    decay_frac: float = 0.2,
    seed: int = 0,
    loss_fn: LossFn = default_loss,
    epochs: int | None = None,
) -> Curve:
    """Train a curve's bends to convergence on the training loss at one `t ~ U(0, 1)` per minibatch.

    Garipov et al. (2018): the endpoints stay frozen, the model is in train mode (BN uses batch
    statistics), SGD with momentum and weight decay on the bends. Data: see `epoch_batches` (a pair is
    shuffled into minibatches of `batch_size`, a loader with `set_epoch` gets it every epoch).
    Schedule (warmup-stable-decay): `warmup_epochs` of linear warmup, then constant `lr` until the
    epoch-mean loss plateaus (`plateaued(history, window, tol, patience, min_epochs)`: no progress over the last
    `patience` of the run, never before `min_epochs`), then a linear decay to 0 over
    `ceil(decay_frac * epochs so far)` epochs; constant-LR losses are comparable across epochs, which
    a decaying LR would confound with progress. At most `max_epochs` in all: without a plateau the
    decay takes the last epochs and `converged` is False. `epochs` is a deprecated alias of `max_epochs`.
    Seeded by `seed` through local generators (the global RNG is left untouched). Defaults = the
    `default` preset (conf/landscape/default.yaml; measured with benchmarks/curve_budget.py on mnist1d MLPs, whose
    curves needed 100-300 epochs: see there).
    Returns the curve (eval mode) with `curve.history` (mean train loss per epoch) and `curve.fit`.
    """
    if epochs is not None:
        warnings.warn("fit_curve: `epochs` is deprecated; use `max_epochs`", DeprecationWarning, stacklevel=2)
        max_epochs = epochs
    hyper = {"lr": lr, "batch_size": batch_size, "warmup_epochs": warmup_epochs, "decay_frac": decay_frac}
    _check_fit_args(kind, num_bends, max_epochs, (window, patience, min_epochs, floor), tol, hyper)
    device = model_device(model_a)
    data = train_data if _is_pair(train_data) else batches(train_data)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # only for randomness inside the model (dropout); data and t use `generator`
        curve = Curve(model_a, model_b, kind, num_bends).train()
        opt = torch.optim.SGD([curve.bends], lr=lr, momentum=momentum, weight_decay=weight_decay)
        trainer = _Trainer(curve, data, opt, seed, loss_fn, batch_size)
        plateau = trainer.run(max_epochs, tol, (window, patience, min_epochs, floor), warmup_epochs, decay_frac)
    curve.history = trainer.history
    if not _is_pair(train_data):
        hyper["batch_size"] = getattr(train_data, "batch_size", None)  # the loader's own batches are used
    hyper |= {"patience": patience, "min_epochs": min_epochs, "floor": floor}
    hyper["checks"] = [list(c) for c in trainer.checks]  # (epoch, barrier estimate) pairs, JSON-friendly
    curve.fit = _fit_record(trainer.history, plateau, trainer.steps, max_epochs, tol, window, hyper)
    return curve.eval()


def _fit_record(
    history: list[float], plateau: int | None, steps: int, max_epochs: int, tol: float | None, window: int, hyper: dict
) -> dict:
    """`curve.fit`, JSON-serialisable: epochs run, final (last-epoch mean) train loss, whether the barrier
    plateaued before the cap (`converged`, at `plateau_epoch`), the per-epoch loss history, the barrier estimates
    (`checks`: [epoch, barrier on the probe batch]), the settings, the steps."""
    return {
        "epochs": len(history),
        "final_loss": history[-1],
        "converged": plateau is not None,
        "plateau_epoch": plateau,
        "history": list(history),
        "max_epochs": max_epochs,
        "tol": tol,
        "window": window,
        "steps": steps,
        **hyper,
    }

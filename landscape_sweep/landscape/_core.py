"""Shared plumbing of the landscape math: data normalisation, parameter selection, model-state safety.

Every public function in `landscape/` accepts `data` as a DataLoader, any re-iterable of `(x, y)`
batches, or one `(x, y)` pair of tensors; the loss is the *mean over all samples* of `data`
(batches weighted by their size). Nothing here imports Lightning, Hydra or W&B.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeAlias

import torch
from torch import Tensor, nn
from torch.func import functional_call

Batch = tuple[Tensor, Tensor]
Data: TypeAlias = "Iterable[Batch] | Batch"
LossFn = Callable[[Tensor, Tensor], Tensor]
ParamFilter = Callable[[str, nn.Parameter], bool]
Layout = list[tuple[str, torch.Size]]  # (name, shape) of each tensor in a flat vector, in order

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def default_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy: the training loss of every classifier in the framework."""
    return nn.functional.cross_entropy(logits, y)


def batches(data: Data) -> Sequence[Batch] | Iterable[Batch]:
    """Return `data` as something that can be iterated over many times.

    One `(x, y)` pair becomes a one-element list; a one-shot iterator is materialised; DataLoaders and
    lists are returned as they are. Raises ValueError for empty data.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        out: Iterable[Batch] = [(data[0], data[1])]
    elif iter(data) is data:  # generator / iterator: can only be read once
        out = list(data)
    else:
        out = data
    if isinstance(out, (list, tuple)) and len(out) == 0:
        raise ValueError("data: got no batches; pass a DataLoader, an iterable of (x, y) or one (x, y)")
    if not isinstance(out, (list, tuple)) and hasattr(out, "__len__") and len(out) == 0:  # type: ignore[arg-type]
        raise ValueError("data: the DataLoader yields no batches")
    return out


def iter_batches(data: Data, device: torch.device | str | None = None) -> Iterator[Batch]:
    """Iterate `(x, y)` batches moved to `device` (non-blocking)."""
    for x, y in batches(data):
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        yield x, y


def num_samples(data: Data) -> int:
    """Total number of samples in `data` (one pass)."""
    return sum(int(y.shape[0]) for _, y in batches(data))


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def exclude_norm_and_bias(model: nn.Module) -> ParamFilter:
    """A parameter filter that drops biases and normalisation-layer parameters (common in sharpness work)."""
    norm_names = {
        f"{m_name}.{p_name}" if m_name else p_name
        for m_name, m in model.named_modules()
        if isinstance(m, _NORM_TYPES)
        for p_name, _ in m.named_parameters(recurse=False)
    }
    return lambda name, p: p.ndim > 1 and name not in norm_names


def select_params(model: nn.Module, param_filter: ParamFilter | None = None) -> dict[str, Tensor]:
    """Trainable parameters (requires_grad) passing `param_filter`, detached, by name.

    Raises ValueError when nothing is selected (a model with no trainable parameters).
    """
    params = {
        n: p.detach()
        for n, p in model.named_parameters()
        if p.requires_grad and (param_filter is None or param_filter(n, p))
    }
    if not params:
        raise ValueError(
            f"model: {type(model).__name__} has no trainable parameters selected "
            "(requires_grad=False everywhere or the param_filter dropped all)"
        )
    return params


def frozen_state(model: nn.Module, selected: dict[str, Tensor]) -> dict[str, Tensor]:
    """Everything of the model's state that is *not* varied: unselected parameters and all buffers."""
    state = {n: p.detach() for n, p in model.named_parameters() if n not in selected}
    state.update({n: b for n, b in model.named_buffers()})
    return state


def functional_loss(
    model: nn.Module,
    params: dict[str, Tensor],
    frozen: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn = default_loss,
) -> Tensor:
    """Loss of `model` at `params` (the rest of its state from `frozen`) on one batch."""
    return loss_fn(functional_call(model, {**frozen, **params}, (x,)), y)


@contextlib.contextmanager
def preserved(model: nn.Module, mode: str | None = "eval") -> Iterator[nn.Module]:
    """Run a block on `model` and restore it exactly afterwards.

    Saves and restores parameters, buffers, `.grad`, `requires_grad` and every submodule's train/eval
    flag. `mode="eval"` (the default policy of the landscape math: BN running statistics, no dropout)
    or `"train"` sets the mode for the block; None leaves it.
    """
    training = {m: m.training for m in model.modules()}
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    req = {p: p.requires_grad for p in model.parameters()}
    grads = {p: (None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()}
    try:
        if mode == "eval":
            model.eval()
        elif mode == "train":
            model.train()
        yield model
    finally:
        with torch.no_grad():
            model.load_state_dict(state)
        for m, flag in training.items():
            m.training = flag
        for p, flag in req.items():
            p.requires_grad_(flag)
            p.grad = grads[p]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Data,
    loss_fn: LossFn = default_loss,
    params: dict[str, Tensor] | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy of `model` (in its current mode) over `data`; optional `params` override."""
    device = model_device(model)
    total_loss, correct, n = 0.0, 0, 0
    for x, y in iter_batches(data, device):
        out = model(x) if params is None else functional_call(model, params, (x,), strict=False)
        total_loss += float(loss_fn(out, y)) * y.shape[0]
        correct += int((out.argmax(-1) == y).sum())
        n += y.shape[0]
    return total_loss / n, correct / n


def flatten(tensors: Mapping[str, Tensor] | Iterable[Tensor], layout: Layout | None = None) -> Tensor:
    """Concatenate tensors into one flat vector: a dict's values in its order, or the keys of `layout`.

    The one flattening of the landscape math (Hessian vectors, curve control points, surface directions),
    so every flat vector has the same element order as `unflatten_like` expects.
    """
    if layout is not None:
        if not isinstance(tensors, Mapping):
            raise ValueError("tensors: pass a {name: tensor} mapping together with a layout")
        vals: Iterable[Tensor] = [tensors[k] for k, _ in layout]
    else:
        vals = tensors.values() if isinstance(tensors, Mapping) else tensors
    return torch.cat([t.reshape(-1) for t in vals])


def unflatten_like(vec: Tensor, like: Mapping[str, Tensor] | Layout) -> dict[str, Tensor]:
    """Split the last axis of `vec` into views shaped like `like` (same key order); leading axes are kept.

    `like` is `{name: tensor}` or a layout `[(name, shape)]`; a `(P, D)` stack of P flat points becomes
    `{name: (P, *shape)}`, which is what `torch.func.functional_call` under vmap consumes.
    """
    items = [(k, t.shape) for k, t in like.items()] if isinstance(like, Mapping) else like
    lead, out, i = vec.shape[:-1], {}, 0
    for k, shape in items:
        n = math.prod(shape)
        out[k] = vec[..., i : i + n].view((*lead, *shape))
        i += n
    if i != vec.shape[-1]:
        raise ValueError(f"vec: last axis has {vec.shape[-1]} entries, the layout needs {i}")
    return out


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def check_finite(value: float, what: str) -> float:
    """Raise a one-line ValueError when `value` is NaN/inf (e.g. a diverged model)."""
    if not torch.isfinite(torch.as_tensor(value)):
        raise ValueError(f"{what}: non-finite value {value} at this point (diverged model or bad data)")
    return value

"""How large a model is before it is built: parameter count and training activations, from `torch.device("meta")`
builds (no memory, no data).

A model of the registry grows in steps that repeat with depth: one layer (MLP, CNN stage, ResNet block per stage)
or one block per stage (WRN, depth = 6n + 4). Adding 12 to `depth` adds the same parameters and activations
whatever the depth (12 is a multiple of every period: MLP and ResNet 1, CNN its 1-4 stages, WRN 6), once the depth
is past the first few stages. So a deep model is measured by building two shallow models of the same depth modulo
12 and extrapolating linearly: a million-layer MLP is sized in milliseconds instead of being built for minutes
until the kernel kills it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ._layers import num_params
from .registry import build_model

PERIOD = 12  # adding PERIOD to the depth adds the same parameters and activations (module docstring)
EXACT_UP_TO = 2 * PERIOD + PERIOD - 1  # deeper models are extrapolated from two builds of depth < EXACT_UP_TO


@dataclass(frozen=True)
class ModelSize:
    """`params`: parameter count; `activations`: elements of every leaf module's output in one training forward
    pass of `batch` samples (what autograd keeps for the backward pass, at least)."""

    params: int
    activations: int


def _measure(arch: str, in_shape: tuple[int, ...], num_classes: int, depth: int, width: int, norm: str,
             activation: str, batch: int) -> ModelSize:  # fmt: skip
    """Build on the meta device and run one forward pass there, counting parameters and leaf outputs."""
    with torch.device("meta"):
        model = build_model(arch, in_shape, num_classes, depth, width, norm, activation)
    counts: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: counts.append(out.numel()))
             for m in model.modules() if not list(m.children())]  # fmt: skip
    try:
        with torch.no_grad():
            model(torch.empty(batch, *in_shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return ModelSize(num_params(model), sum(counts))


@functools.lru_cache(maxsize=256)  # a sweep's cells share their few model sizes
def model_size(
    arch: str,
    in_shape: tuple[int, ...],
    num_classes: int,
    depth: int,
    width: int,
    norm: str = "batchnorm",
    activation: str = "relu",
    batch: int = 1,
) -> ModelSize:
    """The size of `build_model(arch, in_shape, num_classes, depth, width, norm, activation)` without building it:
    exact up to depth `EXACT_UP_TO`, deeper extrapolated from two meta builds (module docstring)."""
    args = (arch, tuple(in_shape), num_classes)
    rest = (width, norm, activation, batch)
    if depth <= EXACT_UP_TO:
        return _measure(*args, depth, *rest)
    low = PERIOD + (depth - PERIOD) % PERIOD  # the same depth modulo PERIOD, in [PERIOD, 2 * PERIOD)
    a, b = _measure(*args, low, *rest), _measure(*args, low + PERIOD, *rest)
    steps = (depth - low) // PERIOD
    return ModelSize(a.params + steps * (b.params - a.params), a.activations + steps * (b.activations - a.activations))

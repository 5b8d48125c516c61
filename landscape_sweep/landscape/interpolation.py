"""Points between two models: weight interpolation and BatchNorm statistics recomputation.

Interpolated BatchNorm buffers are meaningless (the mean of two networks' activation statistics is not
the statistics of the interpolated network), so at every point the running statistics are recomputed
from data, as Garipov et al. (2018) do: reset, then a cumulative average over one train-mode pass.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ._core import Data, has_batchnorm, iter_batches, model_device

BatchNormBase = nn.modules.batchnorm._BatchNorm  # BatchNorm1d/2d/3d (and SyncBatchNorm) derive from it


def check_pair(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise a one-line ValueError unless the two models share architecture and every state shape."""
    if type(model_a) is not type(model_b):
        raise ValueError(
            f"model_b: architecture {type(model_b).__name__} differs from model_a's {type(model_a).__name__}"
        )
    sa, sb = model_a.state_dict(), model_b.state_dict()
    if sa.keys() != sb.keys():
        diff = sorted(set(sa) ^ set(sb))[:3]
        raise ValueError(f"model_b: state keys differ from model_a's (e.g. {diff}); not the same architecture")
    for k, v in sa.items():
        if v.shape != sb[k].shape:
            raise ValueError(f"model_b: '{k}' has shape {tuple(sb[k].shape)}, model_a's is {tuple(v.shape)}")


def bn_buffer_names(model: nn.Module) -> list[str]:
    """State names of the BatchNorm running statistics (recomputed, never interpolated)."""
    return [
        f"{name}.{b}" if name else b
        for name, m in model.named_modules()
        if isinstance(m, BatchNormBase) and m.track_running_stats
        for b in ("running_mean", "running_var", "num_batches_tracked")
    ]


@torch.no_grad()
def recompute_bn(model: nn.Module, data: Data) -> nn.Module:
    """Set `model`'s BatchNorm running statistics to those of `data` at its current weights, in place.

    Resets the statistics, then runs one pass over `data` with only the BN layers in train mode (no
    dropout) and no grad, averaging the per-batch statistics cumulatively (batches weighted by size, as
    Garipov et al.'s `update_bn`; with one `(x, y)` pair this is exactly the full-data mean and unbiased
    variance). Momentum and train/eval flags are restored. Returns `model`; a no-op without BN.
    """
    bns = [m for m in model.modules() if isinstance(m, BatchNormBase) and m.track_running_stats]
    if not bns:
        return model
    momenta = [m.momentum for m in bns]
    training = {m: m.training for m in model.modules()}
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.train()
        seen = 0
        for x, _ in iter_batches(data, model_device(model)):
            b = x.shape[0]
            for m in bns:
                m.momentum = b / (seen + b)
            model(x)
            seen += b
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        for m, flag in training.items():
            m.training = flag
    return model


def interpolate_state(sa: dict[str, Tensor], sb: dict[str, Tensor], t: float) -> dict[str, Tensor]:
    """`(1 - t) * sa + t * sb` for floating entries; integer entries (counters) are taken from `sa`."""
    return {k: torch.lerp(v, sb[k], t) if v.is_floating_point() else v.clone() for k, v in sa.items()}


def interpolate(model_a: nn.Module, model_b: nn.Module, t: float, bn_data: Data | None = None) -> nn.Module:
    """A new model at `(1 - t) * theta_a + t * theta_b` (same train/eval flags as `model_a`).

    For models with BatchNorm the running statistics are recomputed at that point over `bn_data`
    (required then; see `recompute_bn`). The inputs are not modified.
    """
    check_pair(model_a, model_b)
    if has_batchnorm(model_a) and bn_data is None:
        raise ValueError("bn_data: the models have BatchNorm; pass data to recompute its statistics at t")
    new = copy.deepcopy(model_a)
    new.load_state_dict(interpolate_state(model_a.state_dict(), model_b.state_dict(), float(t)))
    if bn_data is not None:
        recompute_bn(new, bn_data)
    return new

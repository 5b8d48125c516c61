"""Registry of the model families: `build_model` from (arch, depth, width, norm, activation) + data shape."""

from __future__ import annotations

from torch import nn

from ._layers import ACTIVATIONS, NORMS
from .cnn import CNN
from .mlp import MLP
from .resnet import ResNet
from .wide_resnet import WideResNet, blocks_per_stage

MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, "resnet": ResNet, "wide_resnet": WideResNet}
ARCHS: tuple[str, ...] = tuple(MODELS)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_model_args(arch: str, depth: int, width: int, norm: str, activation: str) -> None:
    """Check the `model.*` config values without building; one-line ValueError on the first bad one."""
    if arch not in MODELS:
        raise ValueError(f"model.arch={arch!r}: unknown architecture; allowed: {', '.join(ARCHS)}")
    for key, value in (("depth", depth), ("width", width)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"model.{key}={value!r}: must be an integer >= 1")
    if arch == "wide_resnet" and blocks_per_stage(depth) is None:
        raise ValueError(f"model.depth={depth!r}: wide_resnet depth must be 6n+4 (10, 16, 22, 28, ...)")
    if norm not in NORMS:
        raise ValueError(f"model.norm={norm!r}: unknown norm; allowed: {', '.join(NORMS)}")
    if activation not in ACTIVATIONS:
        allowed = ", ".join(ACTIVATIONS)
        raise ValueError(f"model.activation={activation!r}: unknown activation; allowed: {allowed}")


def build_model(
    arch: str,
    in_shape: tuple[int, ...],
    num_classes: int,
    depth: int,
    width: int,
    norm: str = "batchnorm",
    activation: str = "relu",
) -> nn.Module:
    """Build a classifier `(N, *in_shape) -> (N, num_classes)` logits; see each family's module docstring."""
    validate_model_args(arch, depth, width, norm, activation)
    shape = tuple(in_shape)
    if not shape or not all(_is_int(s) and s >= 1 for s in shape):
        raise ValueError(f"in_shape={in_shape!r}: must be a non-empty tuple of integers >= 1")
    if arch != "mlp" and len(shape) not in (2, 3):
        raise ValueError(f"in_shape={shape}: {arch} needs (C, L) or (C, H, W) input")
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r}: must be an integer >= 1")
    return MODELS[arch](shape, num_classes, depth, width, norm, activation)


def num_params(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

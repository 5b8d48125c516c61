"""Registry of the model families: `build_model` from (arch, depth, width, norm, activation) + data shape."""

from __future__ import annotations

from torch import nn

from ..checks import check_choice, check_int, fail, is_int
from ._layers import ACTIVATIONS, NORMS, num_params
from .cnn import CNN
from .mlp import MLP
from .resnet import ResNet
from .wide_resnet import WideResNet, check_wrn_depth

MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, "resnet": ResNet, "wide_resnet": WideResNet}
ARCHS: tuple[str, ...] = tuple(MODELS)

__all__ = ["ARCHS", "MODELS", "build_model", "num_params", "validate_model_args"]


def validate_model_args(arch: str, depth: int, width: int, norm: str, activation: str) -> None:
    """Check the `model.*` config values without building; one-line ValueError on the first bad one."""
    check_choice("model.arch", arch, ARCHS)
    check_int("model.depth", depth)
    check_int("model.width", width)
    if arch == "wide_resnet":
        check_wrn_depth(depth)
    check_choice("model.norm", norm, NORMS)
    check_choice("model.activation", activation, ACTIVATIONS)


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
    if not shape or not all(is_int(size) and size >= 1 for size in shape):
        fail("in_shape", in_shape, "must be a non-empty tuple of integers >= 1")
    if arch != "mlp" and len(shape) not in (2, 3):
        fail("in_shape", shape, f"{arch} needs (C, L) or (C, H, W) input")
    check_int("num_classes", num_classes)
    return MODELS[arch](shape, num_classes, depth, width, norm, activation)

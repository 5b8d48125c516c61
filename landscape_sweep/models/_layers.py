"""Shared building blocks of the model families: norm/activation/conv factories, init, permutation groups.

Convolutional families pick 1-D or 2-D layers from `len(in_shape)`: `(C, L)` -> Conv1d/BatchNorm1d,
`(C, H, W)` -> Conv2d/BatchNorm2d. "layernorm" in a conv net is `GroupNorm(1, C)`: it normalises over
all channels and positions but keeps a per-channel affine, so permuting channels commutes with it.
Hidden conv/linear layers carry a bias only when `norm == "none"` (a following norm would cancel it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from torch import Tensor, nn

from ..checks import fail

NORMS: tuple[str, ...] = ("batchnorm", "layernorm", "none")
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "tanh", "silu", "leaky_relu")

Axes = list[tuple[str, int]]  # (state_dict key, axis) pairs
Spec = dict[str, Axes]
Blocks = dict[str, list[str]]  # block name -> parameter names, blocks in forward order

_ACT = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}
# Kaiming gain per activation (torch.nn.init.calculate_gain names); gelu/silu are ReLU-like.
_GAIN = {"relu": "relu", "gelu": "relu", "tanh": "tanh", "silu": "relu", "leaky_relu": "leaky_relu"}
_BN = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}


def make_act(activation: str) -> nn.Module:
    return _ACT[activation]()


def make_norm(norm: str, channels: int, dim: int) -> nn.Module:
    """Norm over `channels` features; `dim` = 0 for Linear features, 1/2 for Conv1d/Conv2d maps."""
    if norm == "batchnorm":
        return _BN[dim](channels)
    if norm == "layernorm":
        return nn.LayerNorm(channels) if dim == 0 else nn.GroupNorm(1, channels)
    return nn.Identity()


def make_conv(dim: int, c_in: int, c_out: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Module:
    """A 'same'-padded Conv1d/Conv2d (padding kernel // 2)."""
    return _CONV[dim](c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=bias)


def make_maxpool(dim: int) -> nn.Module:
    return _MAXPOOL[dim](2)


def conv_dim(in_shape: tuple[int, ...]) -> int:
    """1 for `(C, L)` input, 2 for `(C, H, W)`; ValueError otherwise."""
    if len(in_shape) not in (2, 3):
        fail("in_shape", tuple(in_shape), "conv nets need (C, L) or (C, H, W)")
    return len(in_shape) - 1


def global_avg_pool(x: Tensor) -> Tensor:
    """(N, C, *spatial) -> (N, C): no flatten order, so channel permutations pass straight to the head."""
    return x.flatten(2).mean(-1)


def init_weights(model: nn.Module, activation: str) -> None:
    """Kaiming-normal (fan_in) conv/linear weights with the activation's gain, zero biases, norms 1/0.

    The classifier head (`model.head`) gets the linear gain. Deterministic given the torch seed.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            gain = "linear" if module is getattr(model, "head", None) else _GAIN[activation]
            nn.init.kaiming_normal_(module.weight, a=0.01, mode="fan_in", nonlinearity=gain)  # a: leaky slope
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORM_TYPES) and module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def num_params(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def residual_stages(
    make_block: Callable[[int, int, int], nn.Module], channels: int, widths: Sequence[int], per_stage: int
) -> tuple[nn.Sequential, int]:
    """`per_stage` blocks `make_block(c_in, c_out, stride)` for each stage width in `widths`, stride 2 at the
    first block of every stage but the first; returns the blocks and their output channels."""
    blocks = []
    for stage, c_out in enumerate(widths):
        for index in range(per_stage):
            blocks.append(make_block(channels, c_out, 2 if stage > 0 and index == 0 else 1))
            channels = c_out
    return nn.Sequential(*blocks), channels


def param_names(names: dict[nn.Module, str], *modules: nn.Module) -> list[str]:
    """Full names (as in `model.named_parameters()`) of every parameter of `modules`, in their order."""
    return [_key(names[m], n) for m in modules for n, _ in m.named_parameters()]


def stage_blocks(
    names: dict[nn.Module, str], stem: nn.Module, blocks: nn.Sequential, per_stage: int, head: Sequence[nn.Module]
) -> Blocks:
    """Blocks of a residual net: `stem`, `stage<i>` (each run of `per_stage` residual blocks), `head` (`head`
    modules: e.g. a final norm and the classifier)."""
    stages = [list(blocks)[i : i + per_stage] for i in range(0, len(blocks), per_stage)]
    out = {"stem": param_names(names, stem)}
    out |= {f"stage{i}": param_names(names, *stage) for i, stage in enumerate(stages, 1)}
    return out | {"head": param_names(names, *head)}


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def out_axes(prefix: str, module: nn.Module) -> Axes:
    """(key, 0) for every parameter and running-stat buffer of `module` (whose axis 0 is its output)."""
    tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
    return [(_key(prefix, n), 0) for n, t in tensors if n != "num_batches_tracked" and t.ndim >= 1]


def in_axes(prefix: str, module: nn.Module) -> Axes:
    """(weight key, 1): the input axis of a conv/linear layer."""
    return [(_key(prefix, "weight"), 1)]


def hidden_group(names: dict[nn.Module, str], writer: nn.Module, norm: nn.Module, reader: nn.Module) -> Axes:
    """One group of hidden units: the out-axes of the layer writing them and of its norm, and the in-axis of
    the layer reading them."""
    return out_axes(names[writer], writer) + out_axes(names[norm], norm) + in_axes(names[reader], reader)


def chain_groups(
    names: dict[nn.Module, str], blocks: Sequence[nn.Module], layers: Sequence[nn.Module], head: nn.Module
) -> Spec:
    """One group per block of a plain chain (layer -> norm -> act): the out-axes of its layer and its
    `norm`, and the in-axis of whatever reads it (the next block's layer, or the head)."""
    readers = [*layers[1:], head]
    return {
        names[block]: hidden_group(names, layer, block.norm, reader)
        for block, layer, reader in zip(blocks, layers, readers)
    }


def residual_groups(names: dict[nn.Module, str], blocks: Iterable[nn.Module], stem: Axes, head: Axes) -> Spec:
    """Groups of a residual net: `stream<k>` per segment of the residual stream, `<block>.inner` per block.

    `stem` axes write the first segment and `head` axes read the last; a block with a projection shortcut
    starts a new segment. Each block's `spec(names, stream, next_stream)` adds its axes to the segment it
    reads and the one it writes, and returns its inner group.
    """
    stream = list(stem)
    groups: Spec = {"stream0": stream}
    for block in blocks:
        next_stream = stream
        if block.shortcut is not None:
            next_stream = groups[f"stream{sum(key.startswith('stream') for key in groups)}"] = []
        groups[f"{names[block]}.inner"] = block.spec(names, stream, next_stream)
        stream = next_stream
    stream += head
    return groups


class Classifier(nn.Module):
    """Base of every family: records its arguments, counts parameters, declares its permutation groups."""

    def __init__(
        self,
        arch: str,
        in_shape: tuple[int, ...],
        num_classes: int,
        depth: int,
        width: int,
        norm: str,
        activation: str,
    ) -> None:
        super().__init__()
        self.arch, self.in_shape, self.num_classes = arch, tuple(in_shape), num_classes
        self.depth, self.width, self.norm, self.activation = depth, width, norm, activation

    def num_params(self) -> int:
        """Trainable parameter count."""
        return num_params(self)

    def permutation_spec(self) -> Spec:
        """{group name: [(state_dict key, axis), ...]} of the units permutable jointly without changing f."""
        raise NotImplementedError

    def param_blocks(self) -> Blocks:
        """{block name: parameter names} in forward order, every parameter in exactly one block: the units whose
        curvature `landscape.blocks.block_curvature` measures separately (each family's docstring names them)."""
        raise NotImplementedError

    def _names(self) -> dict[nn.Module, str]:
        return {m: n for n, m in self.named_modules()}

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, num_classes={self.num_classes}, params={self.num_params()}"

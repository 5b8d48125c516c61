"""Wide ResNet WRN-d-k (Zagoruyko & Komodakis 2016) with pre-activation blocks, 1-D or 2-D.

`depth` is the total depth d = 6n + 4 (10, 16, 22, 28, ...), giving n blocks per stage; `width` is
the widen factor k. Stem: conv3 with 16 channels; 3 stages with (16k, 32k, 64k) channels, stride 2
at the first block of stages 2 and 3; a block computes o = act(norm1(x)),
conv2(act(norm2(conv1(o)))) + shortcut, the shortcut being x or, when channels/stride change, a 1x1
conv of o. Then norm -> act -> global average pooling -> Linear head. No dropout.
WRN-16-4 has 2.75M parameters on CIFAR-10 (paper: 2.7M).
Permutation groups: one per residual-stream segment (the stem output, and each stage's stream, which
starts at a projection shortcut): writers' out-axes, every pre-activation norm1 reading it, the
in-axes of conv1s / projections / the head, and the final norm; one per block for its inner channels.
Blocks (per-block curvature): `stem` (the first conv), `stage1`, `stage2`, `stage3` (the n WideBlocks of each),
`head` (the final norm and the Linear classifier): always 5, whatever the depth.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from ..checks import fail
from ._layers import (
    Axes,
    Blocks,
    Classifier,
    Spec,
    conv_dim,
    global_avg_pool,
    hidden_group,
    in_axes,
    init_weights,
    make_act,
    make_conv,
    make_norm,
    out_axes,
    residual_groups,
    residual_stages,
    stage_blocks,
)

STEM_CHANNELS = 16


def blocks_per_stage(depth: int) -> int | None:
    """n for a WRN of total depth 6n + 4, or None if `depth` is not of that form."""
    blocks, rest = divmod(depth - 4, 6)
    return blocks if rest == 0 and blocks >= 1 else None


def check_wrn_depth(depth: int) -> int:
    """Blocks per stage of a WRN of total depth `depth`; one-line ValueError if it is not 6n + 4."""
    blocks = blocks_per_stage(depth)
    if blocks is None:
        fail("model.depth", depth, "wide_resnet depth must be 6n+4 (10, 16, 22, 28, ...)")
    return blocks


class WideBlock(nn.Module):
    def __init__(self, dim: int, c_in: int, c_out: int, stride: int, norm: str, activation: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.norm1 = make_norm(norm, c_in, dim)
        self.conv1 = make_conv(dim, c_in, c_out, 3, stride, bias)
        self.norm2 = make_norm(norm, c_out, dim)
        self.conv2 = make_conv(dim, c_out, c_out, 3, 1, bias)
        self.act = make_act(activation)
        self.shortcut = make_conv(dim, c_in, c_out, 1, stride, bias) if stride != 1 or c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        pre = self.act(self.norm1(x))
        h = self.conv2(self.act(self.norm2(self.conv1(pre))))
        return h + (x if self.shortcut is None else self.shortcut(pre))

    def spec(self, names: dict[nn.Module, str], stream: Axes, next_stream: Axes) -> Axes:
        """Add this block's axes to the stream segments it reads and writes; return its inner group."""
        stream += out_axes(names[self.norm1], self.norm1) + in_axes(names[self.conv1], self.conv1)
        if self.shortcut is not None:
            stream += in_axes(names[self.shortcut], self.shortcut)
            next_stream += out_axes(names[self.shortcut], self.shortcut)
        next_stream += out_axes(names[self.conv2], self.conv2)
        return hidden_group(names, self.conv1, self.norm2, self.conv2)


class WideResNet(Classifier):
    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        depth: int,
        width: int,
        norm: str = "batchnorm",
        activation: str = "relu",
    ) -> None:
        super().__init__("wide_resnet", in_shape, num_classes, depth, width, norm, activation)
        per_stage = check_wrn_depth(depth)
        dim = conv_dim(in_shape)
        self.stem = make_conv(dim, in_shape[0], STEM_CHANNELS, 3, bias=norm == "none")
        make_block = partial(WideBlock, dim, norm=norm, activation=activation)
        widths = (16 * width, 32 * width, 64 * width)
        self.blocks, channels = residual_stages(make_block, STEM_CHANNELS, widths, per_stage)
        self.final_norm = make_norm(norm, channels, dim)
        self.final_act = make_act(activation)
        self.head = nn.Linear(channels, num_classes)
        init_weights(self, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(global_avg_pool(self.final_act(self.final_norm(self.blocks(self.stem(x))))))

    def permutation_spec(self) -> Spec:
        names = self._names()
        readers = out_axes(names[self.final_norm], self.final_norm) + in_axes(names[self.head], self.head)
        return residual_groups(names, self.blocks, out_axes(names[self.stem], self.stem), readers)

    def param_blocks(self) -> Blocks:
        per_stage = check_wrn_depth(self.depth)
        return stage_blocks(self._names(), self.stem, self.blocks, per_stage, [self.final_norm, self.head])

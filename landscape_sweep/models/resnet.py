"""CIFAR-style ResNet (He et al. 2016) with post-activation BasicBlocks, 1-D or 2-D.

Stem: conv3 -> norm -> act with `width` channels; 3 stages of `depth` BasicBlocks each with widths
(w, 2w, 4w) and stride 2 at the first block of stages 2 and 3; a block computes
act(norm2(conv2(act(norm1(conv1(x))))) + shortcut(x)), the shortcut being identity or, when the
shape changes, a 1x1 conv + norm projection. Global average pooling and a Linear head.
Total layers 6 * depth + 2, so depth=3, width=16 is ResNet-20 (0.27M parameters on CIFAR-10).
Permutation groups: one per stage for the residual stream (stem or projection outputs, every block's
conv2/norm2 outputs, and the in-axes of all readers: conv1s, projections, the head) and one per block
for its inner channels (conv1/norm1 outputs, conv2 in-axis).
Blocks (per-block curvature): `stem`, `stage1`, `stage2`, `stage3` (the `depth` BasicBlocks of each, shortcuts
included), `head` (the Linear classifier): always 5, whatever the depth.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

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


class BasicBlock(nn.Module):
    def __init__(self, dim: int, c_in: int, c_out: int, stride: int, norm: str, activation: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = make_conv(dim, c_in, c_out, 3, stride, bias)
        self.norm1 = make_norm(norm, c_out, dim)
        self.conv2 = make_conv(dim, c_out, c_out, 3, 1, bias)
        self.norm2 = make_norm(norm, c_out, dim)
        self.act = make_act(activation)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or c_in != c_out:
            proj = make_conv(dim, c_in, c_out, 1, stride, bias)
            self.shortcut = nn.Sequential(proj, make_norm(norm, c_out, dim))

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.act(h + (x if self.shortcut is None else self.shortcut(x)))

    def spec(self, names: dict[nn.Module, str], stream: Axes, next_stream: Axes) -> Axes:
        """Add this block's axes to the stream segments it reads and writes; return its inner group."""
        stream += in_axes(names[self.conv1], self.conv1)
        if self.shortcut is not None:
            conv, norm = self.shortcut
            stream += in_axes(names[conv], conv)
            next_stream += out_axes(names[conv], conv) + out_axes(names[norm], norm)
        next_stream += out_axes(names[self.conv2], self.conv2) + out_axes(names[self.norm2], self.norm2)
        return hidden_group(names, self.conv1, self.norm1, self.conv2)


class ResNet(Classifier):
    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        depth: int,
        width: int,
        norm: str = "batchnorm",
        activation: str = "relu",
    ) -> None:
        super().__init__("resnet", in_shape, num_classes, depth, width, norm, activation)
        dim = conv_dim(in_shape)
        stem_conv = make_conv(dim, in_shape[0], width, 3, bias=norm == "none")
        self.stem = nn.Sequential(stem_conv, make_norm(norm, width, dim), make_act(activation))
        make_block = partial(BasicBlock, dim, norm=norm, activation=activation)
        self.blocks, channels = residual_stages(make_block, width, (width, 2 * width, 4 * width), depth)
        self.head = nn.Linear(channels, num_classes)
        init_weights(self, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(global_avg_pool(self.blocks(self.stem(x))))

    def permutation_spec(self) -> Spec:
        names = self._names()
        conv, norm = self.stem[0], self.stem[1]
        stem = out_axes(names[conv], conv) + out_axes(names[norm], norm)
        return residual_groups(names, self.blocks, stem, in_axes(names[self.head], self.head))

    def param_blocks(self) -> Blocks:
        return stage_blocks(self._names(), self.stem, self.blocks, self.depth, [self.head])

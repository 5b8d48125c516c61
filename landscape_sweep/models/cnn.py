"""VGG-style CNN on 1-D `(C, L)` or 2-D `(C, H, W)` input (Conv1d or Conv2d from `len(in_shape)`).

`depth` conv layers (kernel 3, padding 1, conv -> norm -> activation) are split into
S = min(depth, 4, 1 + P) stages, where P is how often the smallest spatial size can be halved while
staying >= 2 (so 40 -> P = 4, 8x8 -> P = 2, 32x32 -> P = 4). Stage i has `width * 2**i` channels;
layers are spread evenly over the stages, the later stages taking the remainder (as in VGG); a 2x
max-pool follows every stage but the last. Then global average pooling and a Linear head (no
flatten, so channel permutations pass straight to the head's in-axis).
Permutation groups: one per conv layer's output channels.
Blocks (per-block curvature): `stage1` … `stage<S>` (the conv layers of each stage with their norms; there is no
separate stem), then `head` (the Linear classifier).
"""

from __future__ import annotations

from torch import Tensor, nn

from ._layers import (
    Blocks,
    Classifier,
    Spec,
    chain_groups,
    conv_dim,
    global_avg_pool,
    init_weights,
    make_act,
    make_conv,
    make_maxpool,
    make_norm,
    param_names,
)

MAX_STAGES = 4


def num_stages(depth: int, spatial: int) -> int:
    """Stages of a depth-`depth` CNN on inputs whose smallest spatial size is `spatial`."""
    pools = 0
    while spatial // 2 >= 2:
        spatial //= 2
        pools += 1
    return max(1, min(depth, MAX_STAGES, 1 + pools))


class ConvBlock(nn.Module):
    def __init__(self, dim: int, c_in: int, c_out: int, norm: str, activation: str) -> None:
        super().__init__()
        self.conv = make_conv(dim, c_in, c_out, 3, bias=norm == "none")
        self.norm = make_norm(norm, c_out, dim)
        self.act = make_act(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class CNN(Classifier):
    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        depth: int,
        width: int,
        norm: str = "batchnorm",
        activation: str = "relu",
    ) -> None:
        super().__init__("cnn", in_shape, num_classes, depth, width, norm, activation)
        dim = conv_dim(in_shape)
        stages = num_stages(depth, min(in_shape[1:]))
        per_stage = [depth // stages + (i >= stages - depth % stages) for i in range(stages)]
        self.per_stage = per_stage
        layers: list[nn.Module] = []
        channels = in_shape[0]
        for stage, count in enumerate(per_stage):
            for _ in range(count):
                layers.append(ConvBlock(dim, channels, width * 2**stage, norm, activation))
                channels = width * 2**stage
            if stage < stages - 1:
                layers.append(make_maxpool(dim))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)
        init_weights(self, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(global_avg_pool(self.features(x)))

    def permutation_spec(self) -> Spec:
        blocks = [module for module in self.features if isinstance(module, ConvBlock)]
        return chain_groups(self._names(), blocks, [block.conv for block in blocks], self.head)

    def param_blocks(self) -> Blocks:
        names, convs = self._names(), [m for m in self.features if isinstance(m, ConvBlock)]
        ends = [sum(self.per_stage[: i + 1]) for i in range(len(self.per_stage))]
        out = {
            f"stage{i}": param_names(names, *convs[e - n : e]) for i, (n, e) in enumerate(zip(self.per_stage, ends), 1)
        }
        return out | {"head": param_names(names, self.head)}

"""MLP: `depth` hidden layers of `width` units, each Linear -> norm -> activation, then a Linear head.

Any input shape is flattened. norm: batchnorm = BatchNorm1d(width), layernorm = LayerNorm(width),
none = identity (hidden Linear layers then carry a bias). Permutation groups: one per hidden layer
(its Linear out-axis + bias, the norm's parameters/buffers, and the next Linear's in-axis).
Blocks (per-block curvature): `layer1` … `layer<depth>`, hidden layer i with its norm (`layer1` is the input
layer: it reads the flattened input), then `head`, the output Linear, as its own block, so a depth sweep shows
the hidden layers and the classifier separately.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ._layers import Blocks, Classifier, Spec, chain_groups, init_weights, make_act, make_norm, param_names


class MLPBlock(nn.Module):
    def __init__(self, d_in: int, d_out: int, norm: str, activation: str) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, d_out, bias=norm == "none")
        self.norm = make_norm(norm, d_out, 0)
        self.act = make_act(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.fc(x)))


class MLP(Classifier):
    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        depth: int,
        width: int,
        norm: str = "batchnorm",
        activation: str = "relu",
    ) -> None:
        super().__init__("mlp", in_shape, num_classes, depth, width, norm, activation)
        dims = [math.prod(in_shape)] + [width] * depth
        self.hidden = nn.ModuleList(MLPBlock(d_in, d_out, norm, activation) for d_in, d_out in zip(dims[:-1], dims[1:]))
        self.head = nn.Linear(width, num_classes)
        init_weights(self, activation)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for block in self.hidden:
            x = block(x)
        return self.head(x)

    def permutation_spec(self) -> Spec:
        return chain_groups(self._names(), self.hidden, [block.fc for block in self.hidden], self.head)

    def param_blocks(self) -> Blocks:
        names = self._names()
        out = {f"layer{i}": param_names(names, block) for i, block in enumerate(self.hidden, 1)}
        return out | {"head": param_names(names, self.head)}

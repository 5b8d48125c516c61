"""MLP: `depth` hidden layers of `width` units, each Linear -> norm -> activation, then a Linear head.

Any input shape is flattened. norm: batchnorm = BatchNorm1d(width), layernorm = LayerNorm(width),
none = identity (hidden Linear layers then carry a bias). Permutation groups: one per hidden layer
(its Linear out-axis + bias, the norm's parameters/buffers, and the next Linear's in-axis).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ._layers import Classifier, Spec, chain_groups, init_weights, make_act, make_norm


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

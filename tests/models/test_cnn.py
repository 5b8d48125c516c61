from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape_sweep.models import build_model
from landscape_sweep.models.cnn import ConvBlock, num_stages


@pytest.mark.parametrize(
    ("depth", "spatial", "stages"),
    [(1, 40, 1), (2, 40, 2), (6, 40, 4), (6, 32, 4), (6, 8, 3), (6, 4, 2), (6, 3, 1), (6, 2, 1), (3, 1, 1)],
)
def test_num_stages(depth, spatial, stages):
    assert num_stages(depth, spatial) == stages


@pytest.mark.parametrize(
    ("shape", "depth", "channels", "final_spatial"),
    [
        ((1, 40), 6, [2, 4, 8, 8, 16, 16], (5,)),  # 4 stages: 40 -> 20 -> 10 -> 5
        ((3, 8, 8), 5, [2, 4, 4, 8, 8], (2, 2)),  # 3 stages: 8 -> 4 -> 2, never below 2
        ((1, 8, 8), 1, [2], (8, 8)),
    ],
)
def test_stage_rule(shape, depth, channels, final_spatial):
    model = build_model("cnn", shape, 10, depth, 2)
    blocks = [m for m in model.features if isinstance(m, ConvBlock)]
    assert [b.conv.out_channels for b in blocks] == channels
    assert model.features(torch.randn(2, *shape)).shape[2:] == final_spatial
    assert model.head.in_features == channels[-1]


def test_1d_and_2d_layers_and_exact_count():
    m1 = build_model("cnn", (1, 40), 10, 2, 4, "batchnorm")
    assert isinstance(m1.features[0].conv, nn.Conv1d) and isinstance(m1.features[0].norm, nn.BatchNorm1d)
    # conv 1->4 (k3, no bias) + BN(4); pool; conv 4->8 + BN(8); head 8->10
    assert m1.num_params() == 1 * 4 * 3 + 8 + 4 * 8 * 3 + 16 + 8 * 10 + 10
    m2 = build_model("cnn", (3, 8, 8), 10, 2, 4, "layernorm")
    assert isinstance(m2.features[0].conv, nn.Conv2d) and isinstance(m2.features[0].norm, nn.GroupNorm)
    assert m2.features[0].norm.num_groups == 1
    m3 = build_model("cnn", (3, 8, 8), 10, 2, 4, "none")
    assert m3.num_params() == (3 * 4 * 9 + 4) + (4 * 8 * 9 + 8) + 8 * 10 + 10

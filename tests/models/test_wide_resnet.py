from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape_sweep.models import build_model
from landscape_sweep.models.wide_resnet import blocks_per_stage


def test_wrn_16_4_param_count():
    """WRN-16-4 on CIFAR-10: 2.7M in Zagoruyko & Komodakis (2016); 2,748,890 exactly with BN."""
    model = build_model("wide_resnet", (3, 32, 32), 10, 16, 4, "batchnorm")
    assert model.num_params() == 2_748_890


@pytest.mark.parametrize(("depth", "n"), [(10, 1), (16, 2), (28, 4), (12, None), (4, None), (9, None)])
def test_blocks_per_stage(depth, n):
    assert blocks_per_stage(depth) == n


@pytest.mark.parametrize(("shape", "spatial"), [((1, 40), (10,)), ((3, 8, 8), (2, 2))])
def test_structure(shape, spatial):
    model = build_model("wide_resnet", shape, 10, 16, 2, "layernorm")
    assert [b.conv2.out_channels for b in model.blocks] == [32, 32, 64, 64, 128, 128]
    assert [b.shortcut is not None for b in model.blocks] == [True, False, True, False, True, False]
    assert model.stem.out_channels == 16 and isinstance(model.final_norm, nn.GroupNorm)
    assert model.blocks(model.stem(torch.randn(2, *shape))).shape[1:] == (128, *spatial)


def test_widen_factor_1_has_no_first_projection():
    model = build_model("wide_resnet", (1, 40), 10, 10, 1)
    assert [b.shortcut is not None for b in model.blocks] == [False, True, True]

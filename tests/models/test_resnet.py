from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape_sweep.models import build_model


def test_resnet20_param_count():
    """ResNet-20 (He et al. 2016, CIFAR-10): 0.27M parameters; 272,474 with BN and a biased head."""
    model = build_model("resnet", (3, 32, 32), 10, 3, 16, "batchnorm")
    assert model.num_params() == 272_474


@pytest.mark.parametrize("depth", [1, 3, 9])
def test_total_layers_is_6n_plus_2(depth):
    model = build_model("resnet", (1, 40), 10, depth, 2)
    shortcut_convs = {id(b.shortcut[0]) for b in model.blocks if b.shortcut is not None}
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Linear)) and id(m) not in shortcut_convs]
    assert len(layers) == 6 * depth + 2
    assert len(shortcut_convs) == 2  # stages 2 and 3 change shape


@pytest.mark.parametrize(("shape", "spatial"), [((1, 40), (10,)), ((3, 8, 8), (2, 2))])
def test_stages_stride_and_widths(shape, spatial):
    model = build_model("resnet", shape, 10, 2, 4)
    h = model.blocks(model.stem(torch.randn(2, *shape)))
    assert h.shape[1:] == (16, *spatial)
    assert [b.conv2.out_channels for b in model.blocks] == [4, 4, 8, 8, 16, 16]

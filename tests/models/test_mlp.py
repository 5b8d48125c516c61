from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landscape_sweep.models import MLP, build_model


@pytest.mark.parametrize(
    ("norm", "expected"),
    [
        ("none", (40 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10)),
        ("batchnorm", (40 * 8 + 16) + (8 * 8 + 16) + (8 * 10 + 10)),
        ("layernorm", (40 * 8 + 16) + (8 * 8 + 16) + (8 * 10 + 10)),
    ],
)
def test_exact_param_count(norm, expected):
    assert build_model("mlp", (1, 40), 10, 2, 8, norm).num_params() == expected


def test_layers_and_norm_types():
    model = build_model("mlp", (3, 8, 8), 10, 3, 16, "layernorm", "silu")
    assert isinstance(model, MLP) and len(model.hidden) == 3
    assert all(isinstance(b.norm, nn.LayerNorm) and isinstance(b.act, nn.SiLU) for b in model.hidden)
    assert model.hidden[0].fc.in_features == 3 * 8 * 8 and model.hidden[0].fc.bias is None
    assert isinstance(build_model("mlp", (1, 40), 10, 1, 4).hidden[0].norm, nn.BatchNorm1d)


def test_kaiming_init():
    torch.manual_seed(0)
    model = build_model("mlp", (1, 40), 10, 2, 512, "batchnorm", "relu")
    std = model.hidden[1].fc.weight.std().item()
    assert std == pytest.approx(math.sqrt(2 / 512), rel=0.02)
    assert model.head.weight.std().item() == pytest.approx(math.sqrt(1 / 512), rel=0.05)
    norm = model.hidden[0].norm
    assert torch.equal(norm.weight, torch.ones(512)) and torch.equal(norm.bias, torch.zeros(512))

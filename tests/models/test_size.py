"""`models.size.model_size`: a model's parameters and training activations without building it (meta device), exact
for shallow models and extrapolated for deep ones, so the pre-check can refuse a model too large for memory."""

from __future__ import annotations

import time

import pytest
import torch

from landscape_sweep.models import build_model, num_params
from landscape_sweep.models.size import EXACT_UP_TO, _measure, model_size

SHAPES = {"mlp": (1, 40), "cnn": (3, 32, 32), "resnet": (3, 32, 32), "wide_resnet": (3, 32, 32)}


@pytest.mark.parametrize(
    "arch,depth",
    [("mlp", 37), ("mlp", 53), ("cnn", 39), ("cnn", 50), ("resnet", 41), ("wide_resnet", 40), ("wide_resnet", 58)],
)
@pytest.mark.parametrize("norm", ["batchnorm", "none"])
def test_deep_models_are_extrapolated_exactly(arch, depth, norm):
    assert depth > EXACT_UP_TO
    got = model_size(arch, SHAPES[arch], 10, depth, 4, norm, "relu", batch=3)
    assert got == _measure(arch, SHAPES[arch], 10, depth, 4, norm, "relu", 3)  # a full meta build


def test_shallow_sizes_are_those_of_the_real_model():
    size = model_size("cnn", (1, 40), 10, 5, 16, batch=2)
    model = build_model("cnn", (1, 40), 10, 5, 16)
    assert size.params == num_params(model)
    outputs = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: outputs.append(o.numel()))
             for m in model.modules() if not list(m.children())]  # fmt: skip
    model(torch.zeros(2, 1, 40))
    for h in hooks:
        h.remove()
    assert size.activations == sum(outputs)


def test_a_million_layers_are_sized_in_well_under_a_second():
    t0 = time.perf_counter()
    size = model_size("mlp", (1, 40), 10, 1_000_000, 64, batch=128)
    assert time.perf_counter() - t0 < 1.0
    per_layer = 64 * 64 + 2 * 64  # Linear weight (no bias before BatchNorm), BatchNorm affine
    assert size.params == 40 * 64 + 2 * 64 + (1_000_000 - 1) * per_layer + 64 * 10 + 10

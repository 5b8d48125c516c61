"""build_model / validate_model_args / num_params over every family, on 1-D and 2-D input."""

from __future__ import annotations

import pytest
import torch

from landscape_sweep.models import ACTIVATIONS, ARCHS, NORMS, build_model, num_params, validate_model_args

SHAPES = [(1, 40), (3, 8, 8), (1, 8, 8)]
DEPTHS = {"mlp": [1, 2, 3, 4], "cnn": [1, 2, 3, 4, 5, 6], "resnet": [1, 2, 3], "wide_resnet": [10, 16, 22]}


def test_public_constants():
    assert ARCHS == ("mlp", "cnn", "resnet", "wide_resnet")
    assert NORMS == ("batchnorm", "layernorm", "none")
    assert ACTIVATIONS == ("relu", "gelu", "tanh", "silu", "leaky_relu")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("norm", NORMS)
def test_output_shape_and_param_count(arch, shape, norm):
    depth = DEPTHS[arch][1]
    model = build_model(arch, shape, 7, depth, 2, norm, "gelu")
    model.train()
    assert model(torch.randn(3, *shape)).shape == (3, 7)
    assert num_params(model) == model.num_params() == sum(p.numel() for p in model.parameters())
    assert (model.arch, model.in_shape, model.num_classes, model.depth, model.width, model.norm) == (
        arch,
        shape,
        7,
        depth,
        2,
        norm,
    )


def test_num_params_counts_only_trainable():
    model = build_model("mlp", (1, 40), 10, 2, 8, "none")
    model.head.weight.requires_grad_(False)
    assert num_params(model) == 40 * 8 + 8 + 8 * 8 + 8 + 10


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", SHAPES[:2])
def test_param_count_grows_strictly_with_width_and_depth(arch, shape):
    by_width = [num_params(build_model(arch, shape, 10, DEPTHS[arch][0], w)) for w in (1, 2, 3, 4)]
    by_depth = [num_params(build_model(arch, shape, 10, d, 2)) for d in DEPTHS[arch]]
    assert by_width == sorted(set(by_width))
    assert by_depth == sorted(set(by_depth))


@pytest.mark.parametrize("arch", ARCHS)
def test_deterministic_given_seed(arch):
    def state(seed):
        torch.manual_seed(seed)
        return build_model(arch, (1, 40), 10, DEPTHS[arch][0], 2).state_dict()

    a, b, c = state(0), state(0), state(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("vgg", 2, 8, "batchnorm", "relu"),
            "model.arch='vgg': must be one of mlp, cnn, resnet, wide_resnet",
        ),
        (("mlp", 0, 8, "batchnorm", "relu"), "model.depth=0: must be an integer >= 1"),
        (("mlp", True, 8, "batchnorm", "relu"), "model.depth=True: must be an integer >= 1"),
        (("cnn", 2, 2.5, "batchnorm", "relu"), "model.width=2.5: must be an integer >= 1"),
        (
            ("wide_resnet", 12, 2, "batchnorm", "relu"),
            "model.depth=12: wide_resnet depth must be 6n+4 (10, 16, 22, 28, ...)",
        ),
        (
            ("wide_resnet", 4, 2, "batchnorm", "relu"),
            "model.depth=4: wide_resnet depth must be 6n+4 (10, 16, 22, 28, ...)",
        ),
        (
            ("mlp", 2, 8, "groupnorm", "relu"),
            "model.norm='groupnorm': must be one of batchnorm, layernorm, none",
        ),
        (
            ("mlp", 2, 8, "none", "elu"),
            "model.activation='elu': must be one of relu, gelu, tanh, silu, leaky_relu",
        ),
    ],
)
def test_validation_messages(args, message):
    with pytest.raises(ValueError) as info:
        validate_model_args(*args)
    assert str(info.value) == message
    with pytest.raises(ValueError, match="^model\\."):
        build_model(args[0], (1, 40), 10, *args[1:])


def test_valid_args_pass():
    for arch in ARCHS:
        validate_model_args(arch, DEPTHS[arch][0], 1, "none", "tanh")


@pytest.mark.parametrize(
    ("arch", "shape", "num_classes", "message"),
    [
        ("cnn", (40,), 10, "in_shape=(40,): cnn needs (C, L) or (C, H, W) input"),
        ("resnet", (1, 3, 8, 8), 10, "in_shape=(1, 3, 8, 8): resnet needs (C, L) or (C, H, W) input"),
        ("mlp", (0, 4), 10, "in_shape=(0, 4): must be a non-empty tuple of integers >= 1"),
        ("mlp", (1, 40), 0, "num_classes=0: must be an integer >= 1"),
    ],
)
def test_shape_validation(arch, shape, num_classes, message):
    with pytest.raises(ValueError) as info:
        build_model(arch, shape, num_classes, 1, 2)
    assert str(info.value) == message


def test_mlp_flattens_any_shape():
    assert build_model("mlp", (40,), 3, 1, 4)(torch.randn(2, 40)).shape == (2, 3)
    assert build_model("mlp", (2, 3, 4, 5), 3, 1, 4)(torch.randn(2, 2, 3, 4, 5)).shape == (2, 3)


BLOCKS = {  # (arch, shape, depth) -> expected block names: the MLP per hidden layer, the conv nets per stage
    ("mlp", (1, 40), 3): ["layer1", "layer2", "layer3", "head"],
    ("mlp", (1, 40), 1): ["layer1", "head"],
    ("cnn", (1, 40), 6): ["stage1", "stage2", "stage3", "stage4", "head"],  # 40 -> 4 stages
    ("cnn", (1, 8, 8), 5): ["stage1", "stage2", "stage3", "head"],  # 8x8 -> 3 stages
    ("cnn", (1, 40), 1): ["stage1", "head"],
    ("resnet", (1, 40), 2): ["stem", "stage1", "stage2", "stage3", "head"],
    ("wide_resnet", (3, 8, 8), 16): ["stem", "stage1", "stage2", "stage3", "head"],
}


@pytest.mark.parametrize("norm", ["batchnorm", "none"])
@pytest.mark.parametrize(("arch", "shape", "depth"), list(BLOCKS))
def test_param_blocks_partition_the_parameters_in_forward_order(arch, shape, depth, norm):
    model = build_model(arch, shape, 5, depth, 2, norm)
    blocks = model.param_blocks()
    assert list(blocks) == BLOCKS[(arch, shape, depth)]
    names = [n for names in blocks.values() for n in names]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())  # each in exactly one block
    block_of = {n: b for b, ns in blocks.items() for n in ns}
    used: list[str] = []  # blocks in the order the forward pass first uses their parameters
    for m in model.modules():
        own = [k for k, _ in m.named_parameters(recurse=False)]
        if own:
            prefix = next(n for n, mod in model.named_modules() if mod is m)
            m.register_forward_pre_hook(lambda mod, inp, b=block_of[f"{prefix}.{own[0]}"]: used.append(b))
    model.eval()(torch.randn(2, *shape))
    assert list(dict.fromkeys(used)) == list(blocks)  # first uses in block order ...
    assert used == sorted(used, key=list(blocks).index)  # ... and never back to an earlier block
    if arch == "mlp":
        assert blocks["layer1"][0] == "hidden.0.fc.weight" and blocks["head"] == ["head.weight", "head.bias"]
    if arch in ("resnet", "wide_resnet"):  # stages hold equally many residual blocks
        counts = [len({n.split(".")[1] for n in blocks[f"stage{i}"]}) for i in (1, 2, 3)]
        assert counts == [depth if arch == "resnet" else (depth - 4) // 6] * 3

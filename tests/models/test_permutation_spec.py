"""The permutation spec of every family is exactly right: permuting by it keeps the function, every entry
is needed, and it covers every hidden axis of every parameter/buffer."""

from __future__ import annotations

import pytest
import torch

from landscape_sweep.models import ACTIVATIONS, ARCHS, NORMS, build_model

SIZES = {"mlp": (3, 6), "cnn": (4, 3), "resnet": (2, 2), "wide_resnet": (10, 1)}
FIRST = {
    "mlp": "hidden.0.fc.weight",
    "cnn": "features.0.conv.weight",
    "resnet": "stem.0.weight",
    "wide_resnet": "stem.weight",
}
SHAPES = [(1, 40), (3, 8, 8)]
CASES = [
    (arch, shape, norm, ACTIVATIONS[i % len(ACTIVATIONS)])
    for i, (arch, shape, norm) in enumerate((a, s, n) for a in ARCHS for s in SHAPES for n in NORMS)
]


def generic_model(arch, shape, norm, activation, depth=None, width=None):
    """A float64 model in eval mode with random norm affines and BN running stats (so nothing is trivial)."""
    torch.manual_seed(0)
    d, w = SIZES[arch]
    model = build_model(arch, shape, 5, depth or d, width or w, norm, activation).double().eval()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif t.ndim == 1 and t.is_floating_point():  # biases, norm affines, running means
                t.uniform_(-1.0, 1.0).add_(1.0 if name.endswith("weight") else 0.0)
    return model


def permuted_state(model, spec, seed=1):
    """Apply one random (non-identity) permutation per group along every listed (key, axis)."""
    gen = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for entries in spec.values():
        n = state[entries[0][0]].shape[entries[0][1]]
        perm = torch.randperm(n, generator=gen)
        if n > 1 and torch.equal(perm, torch.arange(n)):
            perm = perm.roll(1)
        for key, axis in entries:
            state[key] = state[key].index_select(axis, perm)
    return state


def outputs_with(model, state, x):
    clone = (
        build_model(
            model.arch, model.in_shape, model.num_classes, model.depth, model.width, model.norm, model.activation
        )
        .double()
        .eval()
    )
    clone.load_state_dict(state)
    with torch.no_grad():
        return clone(x)


@pytest.mark.parametrize(("arch", "shape", "norm", "activation"), CASES)
def test_permuted_model_computes_the_same_function(arch, shape, norm, activation):
    model = generic_model(arch, shape, norm, activation)
    x = torch.randn(7, *shape, dtype=torch.float64)
    spec = model.permutation_spec()
    state = permuted_state(model, spec)
    assert any(not torch.equal(state[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(outputs_with(model, state, x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("arch", "shape"), [(a, s) for a in ARCHS for s in SHAPES])
def test_every_spec_entry_is_needed(arch, shape):
    """Dropping any single (key, axis) from the spec changes the function: the spec has no spare entries."""
    model = generic_model(arch, shape, "batchnorm", "tanh")
    x = torch.randn(5, *shape, dtype=torch.float64)
    ref = model(x).detach()
    spec = model.permutation_spec()
    for group, entries in spec.items():
        for i in range(len(entries)):
            broken = {**spec, group: entries[:i] + entries[i + 1 :]}
            out = outputs_with(model, permuted_state(model, broken), x)
            assert (out - ref).abs().max() > 1e-6, f"{group}: {entries[i]} is not needed"


@pytest.mark.parametrize(("arch", "shape", "norm", "activation"), CASES)
def test_spec_covers_exactly_the_hidden_axes(arch, shape, norm, activation):
    model = generic_model(arch, shape, norm, activation)
    state = model.state_dict()
    spec = model.permutation_spec()
    listed = [entry for entries in spec.values() for entry in entries]
    assert len(listed) == len(set(listed)), "an axis is in two groups"
    for entries in spec.values():  # every axis in a group has the group's size
        assert len({state[k].shape[a] for k, a in entries}) == 1
    not_permuted = {(FIRST[arch], 1), ("head.weight", 0), ("head.bias", 0)}
    expected = {
        (k, a)
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
        for a in range(min(v.ndim, 2))  # conv kernel axes (>= 2) are spatial, never permuted
    } - not_permuted
    assert set(listed) == expected


@pytest.mark.parametrize(
    ("arch", "depth", "width", "groups"),
    [
        ("mlp", 3, 4, "hidden.0 hidden.1 hidden.2"),
        ("cnn", 2, 4, "features.0 features.2"),
        ("resnet", 1, 2, "stream0 blocks.0.inner stream1 blocks.1.inner stream2 blocks.2.inner"),
        # k = 1: the stem output and stage 1 share a stream (no projection in the first block)
        ("wide_resnet", 10, 1, "stream0 blocks.0.inner stream1 blocks.1.inner stream2 blocks.2.inner"),
        (
            "wide_resnet",
            10,
            2,
            "stream0 stream1 blocks.0.inner stream2 blocks.1.inner stream3 blocks.2.inner",
        ),
    ],
)
def test_group_structure(arch, depth, width, groups):
    model = build_model(arch, (1, 40), 3, depth, width)
    assert sorted(model.permutation_spec()) == sorted(groups.split())


def test_resnet_stream_group_spans_the_whole_stage():
    model = build_model("resnet", (1, 40), 3, 2, 4)
    keys = {k for k, _ in model.permutation_spec()["stream1"]}
    expected_writers = {"blocks.2.shortcut.0.weight", "blocks.2.conv2.weight", "blocks.3.conv2.weight"}
    expected_readers = {"blocks.3.conv1.weight", "blocks.4.conv1.weight", "blocks.4.shortcut.0.weight"}
    assert expected_writers | expected_readers <= keys
    assert ("head.weight", 1) in model.permutation_spec()["stream2"]

"""REPAIR (Jordan et al. 2023): exact endpoints, statistics equal to the interpolated targets, a lower barrier on
real data, the corrected layers of every family, and the repaired path evaluated like any other."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landscape_sweep.data import load_data
from landscape_sweep.landscape import align, evaluate_path, linear_path
from landscape_sweep.landscape.repair import RepairedPath, repair_sites, unit_stats
from landscape_sweep.models import build_model

G = torch.Generator().manual_seed(0)
X1D, Y1D = torch.randn(96, 1, 16, generator=G), torch.randint(0, 5, (96,), generator=G)
DATA = [(X1D[i : i + 40], Y1D[i : i + 40]) for i in range(0, 96, 40)]  # uneven batches: sums over batches


def pair(arch: str, norm: str, depth: int, width: int, in_shape=(1, 16)) -> tuple[nn.Module, nn.Module]:
    """Two differently initialised models with random biases/affines (so no statistic is trivial)."""
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = build_model(arch, in_shape, 5, depth, width, norm)
        with torch.no_grad():
            for name, t in m.state_dict().items():
                if t.ndim == 1 and t.is_floating_point() and not name.endswith(("running_mean", "running_var")):
                    t.uniform_(-0.5, 0.5).add_(1.0 if name.endswith("weight") else 0.0)
        out.append(m.eval())
    return out[0], out[1]


def flat(model: nn.Module, names) -> torch.Tensor:
    return torch.cat([model.state_dict()[k].reshape(-1) for k, _ in names])


def test_the_repaired_path_starts_and_ends_at_the_endpoints():
    a, b = pair("mlp", "none", 3, 12)
    bp = align(a, b)
    path = RepairedPath(a, bp, DATA)
    assert path.sites == ["hidden.0.fc", "hidden.1.fc", "hidden.2.fc"] and path.info["units"] == 36
    points = path.points([0.0, 1.0])
    torch.testing.assert_close(points[0], flat(a, path.names), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(points[1], flat(bp, path.names), rtol=1e-5, atol=1e-6)
    assert path.info["std_ratio"] == pytest.approx([1.0, 1.0])
    assert not torch.equal(path.points([0.5])[0], torch.lerp(path.theta_a, path.theta_b, 0.5))  # it corrects


@pytest.mark.parametrize(
    ("arch", "norm", "depth", "width", "sites"),
    [
        ("mlp", "none", 3, 12, 3),
        ("mlp", "layernorm", 2, 12, 2),  # the LayerNorm affines (the hidden Linear layers have no bias)
        ("resnet", "none", 1, 4, 9),  # stem, conv1 + conv2 of 3 blocks, 2 projections
        ("wide_resnet", "layernorm", 10, 1, 7),  # norm1 + norm2 of 3 blocks, the final norm
    ],
)
def test_at_t_half_every_corrected_unit_has_the_interpolated_mean_and_std(arch, norm, depth, width, sites):
    a, b = pair(arch, norm, depth, width)
    path = RepairedPath(a, align(a, b), DATA)
    assert len(path.sites) == sites
    stats = unit_stats(path.model_at(0.5), DATA, path.sites)
    for site in path.sites:
        want_mean = (path.stats_a[site][0] + path.stats_b[site][0]) / 2
        want_std = (path.stats_a[site][1] + path.stats_b[site][1]) / 2
        torch.testing.assert_close(stats[site][0], want_mean, rtol=1e-4, atol=1e-4, msg=site)
        torch.testing.assert_close(stats[site][1], want_std, rtol=1e-4, atol=1e-5, msg=site)
    plain = unit_stats(path.model_at(0.0), DATA, path.sites)  # the model at t=0 is A: A's statistics
    for site in path.sites:
        torch.testing.assert_close(plain[site][1], path.stats_a[site][1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("arch", "depth", "width", "in_shape"),
    [("mlp", 2, 8, (1, 16)), ("cnn", 3, 4, (1, 16)), ("resnet", 1, 4, (3, 8, 8)), ("wide_resnet", 10, 1, (3, 8, 8))],
)
def test_every_family_with_its_default_norm_gives_finite_values(arch, depth, width, in_shape):
    a, b = pair(arch, "batchnorm", depth, width, in_shape)
    g = torch.Generator().manual_seed(1)
    data = (torch.randn(48, *in_shape, generator=g), torch.randint(0, 5, (48,), generator=g))
    bp = align(a, b)
    path = RepairedPath(a, bp, data)
    assert repair_sites(a) == [] and path.info["layers"] == 0  # BatchNorm: REPAIR is the BN reset
    out = evaluate_path(path, data, data, num_points=3)
    same = linear_path(a, bp, data, data, num_points=3)  # so the path is the aligned segment
    assert out["train_loss"] == pytest.approx(same["train_loss"], rel=1e-4)
    assert all(math.isfinite(out[k]) for k in ("loss_barrier", "error_barrier", "path_length", "path_curvature"))
    assert path.model_at(0.5, data)(data[0]).isfinite().all()


def test_a_repaired_path_is_evaluated_like_any_other():
    a, b = pair("cnn", "none", 3, 4)
    path = RepairedPath(a, align(a, b), DATA)
    out = evaluate_path(path, DATA, DATA[:1], num_points=5, ood_data={"shift": DATA[1:]})
    assert out["t"] == [0.0, 0.25, 0.5, 0.75, 1.0] and len(path.info["std_ratio"]) == 5
    for i, t in enumerate(out["t"]):  # each point is the standalone model_at(t)
        model = path.model_at(t)
        logits = model(DATA[0][0]).detach()
        assert out["test_loss"][i] == pytest.approx(float(nn.functional.cross_entropy(logits, DATA[0][1])), rel=1e-4)
    assert out["path_curvature"] > 0 and out["arc_chord_ratio"] > 1  # the repaired points leave the segment
    assert out["endpoint_distance"] == pytest.approx(float((path.theta_b - path.theta_a).norm()), rel=1e-5)
    assert set(out["ood"]) == {"shift"}
    vmapped = evaluate_path(path, DATA, DATA[:1], num_points=5, vectorize=True)  # the accelerator default
    assert vmapped["train_loss"] == pytest.approx(out["train_loss"], rel=1e-5)


def test_repair_lowers_the_aligned_error_barrier_of_trained_mlps_on_mnist1d(data_dir):
    data = load_data("mnist1d", data_dir, train_size=1000)
    x, y = data.train
    models = []
    for seed in (0, 1):  # depth 4: the variance collapse REPAIR undoes compounds over the layers
        torch.manual_seed(seed)
        m = build_model("mlp", data.in_shape, data.num_classes, 4, 64, norm="none")
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        g = torch.Generator().manual_seed(seed)
        for _ in range(10):
            for idx in torch.randperm(len(y), generator=g).split(128):
                loss = nn.functional.cross_entropy(m(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        models.append(m.eval())
    a, bp = models[0], align(*models)
    aligned = linear_path(a, bp, (x, y), num_points=11)
    path = RepairedPath(a, bp, (x[:500], y[:500]))
    repaired = evaluate_path(path, (x, y), num_points=11)
    assert path.info["std_ratio"][5] < 0.9  # the aligned midpoint's units have collapsed
    assert repaired["error_barrier"] < aligned["error_barrier"]

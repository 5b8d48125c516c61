"""Image corruptions (CIFAR-10-C style) on the tiny real-format files of test_vision: range, seeding, severity order,
and the shifted sets `load_data(ood=...)` builds from them."""

from __future__ import annotations

import pytest
import torch

from landscape_sweep.data import load_data
from landscape_sweep.data.core import standardise
from landscape_sweep.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from landscape_sweep.data.tabular import raw_digits
from landscape_sweep.data.vision import raw_vision
from tests.data.test_vision import _cifar10, _mnist


def _tv(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()


def _rows(x: torch.Tensor) -> torch.Tensor:
    """Distinct consecutive pixel rows per image (the vertical resolution left)."""
    return 1 + (x[..., 1:, :] != x[..., :-1, :]).flatten(3).any(-1).any(1).float().sum(-1).mean()


# a statistic of (corrupted, clean) that grows with the severity of each corruption
GROWS = {
    "gaussian_noise": lambda c, x: (c - x).abs().mean(),
    "shot_noise": lambda c, x: (c - x).abs().mean(),
    "impulse_noise": lambda c, x: (c != x).float().mean(),
    "gaussian_blur": lambda c, x: -_tv(c),  # smoother
    "contrast": lambda c, x: -c.std(dim=(2, 3)).mean(),  # flatter
    "brightness": lambda c, x: c.mean(),
    "pixelate": lambda c, x: -_rows(c),  # coarser
}


@pytest.fixture
def images(tmp_path, monkeypatch) -> dict[str, torch.Tensor]:
    """Clean test images in [0, 1] of every layout: CIFAR (RGB 32x32), MNIST (grey 28x28), digits (grey 8x8)."""
    _cifar10(tmp_path / "cifar", monkeypatch, n=4)
    _mnist(tmp_path / "mnist", "MNIST")
    return {
        "cifar10": raw_vision("cifar10", tmp_path / "cifar")[1][0],
        "mnist": raw_vision("mnist", tmp_path / "mnist")[1][0],
        "digits": raw_digits()[1][0][:20],
    }


def test_every_corruption_and_severity_stays_in_range_is_seeded_and_grows(images):
    assert set(GROWS) == set(CORRUPTIONS) and all(len(c) == 5 for c in SEVERITIES.values())
    for name, x in images.items():
        for kind in CORRUPTIONS:
            stats = []
            for severity in range(1, 6):
                out = corrupt(x, kind, severity, seed=3)
                assert out.shape == x.shape and out.dtype == torch.float32, (name, kind)
                assert out.min() >= 0 and out.max() <= 1, (name, kind, severity)
                assert torch.equal(out, corrupt(x, kind, severity, seed=3)), (name, kind)  # a pure function
                assert not torch.equal(out, x), (name, kind, severity)
                stats.append(GROWS[kind](out, x).item())
            steps = [b - a for a, b in zip(stats, stats[1:])]
            if kind == "pixelate" and name == "digits":  # int(8c) = 7, 7, 6, 6, 5 pixels: equal steps tie
                assert all(s >= 0 for s in steps) and stats[-1] > stats[0], (name, stats)
            else:
                assert all(s > 0 for s in steps), (name, kind, stats)
    x = images["cifar10"]
    for kind in ("gaussian_noise", "shot_noise", "impulse_noise"):
        assert not torch.equal(corrupt(x, kind, 3, seed=0), corrupt(x, kind, 3, seed=1)), kind


def test_corruption_arguments_are_checked(images):
    x = images["mnist"]
    with pytest.raises(ValueError, match=r"^severity=6: must be an integer in \[1, 5\]$"):
        corrupt(x, "contrast", 6)
    with pytest.raises(ValueError, match=r"^corruption='fog': must be one of gaussian_noise, "):
        corrupt(x, "fog", 1)
    with pytest.raises(ValueError, match=r"must be \(N, C, H, W\) images"):
        corrupt(x[0], "contrast", 1)


def test_load_data_standardises_the_corrupted_test_set_with_the_train_pool_statistics(tmp_path, monkeypatch):
    _cifar10(tmp_path, monkeypatch, n=3)
    specs = [{"corruption": "gaussian_noise", "severity": 2}, {"name": "dim", "corruption": "contrast", "severity": 5}]
    b = load_data("cifar10", tmp_path, val_size=2, ood=specs)
    assert list(b.ood) == ["gaussian_noise_2", "dim"] and b.info["num_ood"] == {"gaussian_noise_2": 3, "dim": 3}
    (_, _), (xt, yt), _ = raw_vision("cifar10", tmp_path)
    mean, std = torch.tensor(b.info["mean"], dtype=torch.float64), torch.tensor(b.info["std"], dtype=torch.float64)
    assert torch.equal(b.test[0], standardise(xt, mean, std))
    for name, (kind, severity) in {"gaussian_noise_2": ("gaussian_noise", 2), "dim": ("contrast", 5)}.items():
        assert torch.equal(b.ood[name][0], standardise(corrupt(xt, kind, severity, seed=0), mean, std))
        assert torch.equal(b.ood[name][1], b.test[1])
    assert load_data("cifar10", tmp_path).ood == {}


def test_digits_take_corruptions_too():
    b = load_data("digits", None, ood=[{"corruption": "pixelate", "severity": 5, "seed": 2}])
    (x, y) = b.ood["pixelate_5"]
    assert x.shape == b.test[0].shape and torch.equal(y, b.test[1]) and not torch.equal(x, b.test[0])

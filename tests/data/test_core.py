"""The dataset-independent pipeline: val split, seeded subsets, label noise, standardisation, DataBundle."""

import pytest
import torch

from landscape_sweep.data import DataBundle, load_data
from landscape_sweep.data.core import add_label_noise, build_bundle, channel_stats, mix_seed, standardise


def _raw(n=100, n_test=30, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 4, 4, generator=g) * torch.tensor([1.0, 2.0, 5.0]).view(1, 3, 1, 1) + 3
    x[:, :, 0, 0] = torch.arange(n).view(n, 1).float()  # makes each train sample identifiable
    return (x, torch.arange(n) % classes), (torch.rand(n_test, 3, 4, 4, generator=g), torch.arange(n_test) % classes)


def _bundle(train_size=None, label_noise=0.0, val_size=0, seed=0):
    train, test = _raw()
    return build_bundle(
        "toy", train, test, 5, train_size=train_size, label_noise=label_noise, val_size=val_size, seed=seed,
        augment=None,
    )  # fmt: skip


def _ids(bundle_split, mean, std):
    """Recover the raw train ids from standardised inputs (pixel [0, 0] holds the id)."""
    return torch.round(bundle_split[0][:, :, 0, 0].double() * std + mean)[:, 0].long()


def test_mix_seed_is_pure_and_distinct():
    assert mix_seed(3, 1) == mix_seed(3, 1)
    assert len({mix_seed(s, e) for s in range(5) for e in range(5)}) == 25
    assert 0 <= mix_seed(0, 0) < 2**63


def test_standardisation_uses_train_pool_statistics_per_channel():
    (x, y), test = _raw()
    b = build_bundle("toy", (x, y), test, 5, train_size=None, label_noise=0.0, val_size=0, seed=0, augment=None)
    x64 = x.double()
    mean, std = x64.mean((0, 2, 3)), x64.std((0, 2, 3), correction=0)
    torch.testing.assert_close(torch.tensor(b.info["mean"], dtype=torch.float64), mean)
    torch.testing.assert_close(torch.tensor(b.info["std"], dtype=torch.float64), std)
    xs = b.train[0].double()
    torch.testing.assert_close(xs.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(xs.std((0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64))
    ref = ((test[0].double() - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)).float()
    assert torch.equal(b.test[0], ref)
    assert b.train[0].dtype == torch.float32 and b.train[1].dtype == torch.int64


def test_standardise_flat_features_and_constant_channel():
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]], dtype=torch.float64)
    mean, std = channel_stats(x)
    assert mean.tolist() == [2.0, 5.0] and std[0] == 1.0 and std[1] > 0  # constant feature: no division by 0
    assert standardise(x, mean, std).tolist() == [[-1.0, 0.0], [1.0, 0.0]]


def test_val_split_counts_disjoint_and_independent_of_train_size():
    b = _bundle(val_size=20)
    mean, std = b.info["mean"][0], b.info["std"][0]
    tr, va = _ids(b.train, mean, std), _ids(b.val, mean, std)
    assert len(va) == 20 and len(tr) == 80
    assert sorted(tr.tolist() + va.tolist()) == list(range(100))
    assert tr.tolist() == sorted(tr.tolist())  # the pool keeps its original order
    b_frac = _bundle(val_size=0.2)
    assert torch.equal(b_frac.val[0], b.val[0])
    b_small = _bundle(val_size=20, train_size=10)
    assert torch.equal(b_small.val[0], b.val[0]) and torch.equal(b_small.val[1], b.val[1])
    assert b_small.info["mean"] == b.info["mean"]  # statistics do not depend on train_size
    assert not torch.equal(_bundle(val_size=20, seed=1).val[0], b.val[0])
    assert _bundle().val is None


def test_train_subset_seeded_nested_and_deterministic():
    full = _bundle()
    mean, std = full.info["mean"][0], full.info["std"][0]
    a, a2 = _ids(_bundle(train_size=30).train, mean, std), _ids(_bundle(train_size=30).train, mean, std)
    assert len(a) == 30 and len(set(a.tolist())) == 30 and torch.equal(a, a2)
    assert torch.equal(_ids(_bundle(train_size=10).train, mean, std), a[:10])  # nested across sizes
    assert not torch.equal(_ids(_bundle(train_size=30, seed=1).train, mean, std), a)
    assert _bundle(train_size=100).info["num_train"] == 100
    b = _bundle(train_size=30)
    assert torch.equal(b.train[1], a % 5)  # labels travel with their inputs


@pytest.mark.parametrize("frac", [0.0, 0.1, 0.37, 1.0])
def test_label_noise_flips_exact_count_to_other_classes(frac):
    clean, noisy = _bundle(train_size=60), _bundle(train_size=60, label_noise=frac)
    assert torch.equal(clean.train[0], noisy.train[0])
    changed = (clean.train[1] != noisy.train[1]).nonzero().flatten()
    assert len(changed) == round(frac * 60) == noisy.info["num_noisy_labels"]
    assert changed.tolist() == noisy.info["noisy_indices"]
    assert noisy.train[1].min() >= 0 and noisy.train[1].max() < 5
    assert torch.equal(clean.test[1], noisy.test[1])


def test_label_noise_seeded_and_uniform_over_other_classes():
    y = torch.zeros(20000, dtype=torch.long)
    a, ia = add_label_noise(y, 0.5, 4, seed=3)
    b, ib = add_label_noise(y, 0.5, 4, seed=3)
    c, _ = add_label_noise(y, 0.5, 4, seed=4)
    assert torch.equal(a, b) and torch.equal(ia, ib) and not torch.equal(a, c)
    counts = torch.bincount(a[ia], minlength=4)
    assert counts[0] == 0 and (counts[1:] - 10000 / 3).abs().max() < 300


def test_label_noise_does_not_touch_validation():
    a, b = _bundle(val_size=20), _bundle(val_size=20, label_noise=1.0)
    assert torch.equal(a.val[1], b.val[1]) and (a.train[1] != b.train[1]).all()


def test_bundle_to_moves_every_tensor():
    b = _bundle(val_size=10).to("meta")
    assert all(t.device.type == "meta" for s in (b.train, b.val, b.test) for t in s)
    assert b.in_shape == (3, 4, 4) and b.num_classes == 5 and b.name == "toy"
    assert isinstance(b, DataBundle)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(train_size=0), r"data.train_size=0: must be an integer in \[1, 1437\]"),
        (dict(train_size=1438), r"data.train_size=1438: must be an integer in \[1, 1437\]"),
        (dict(train_size=True), r"data.train_size=True: "),
        (dict(train_size=1300, val_size=200), r"data.train_size=1300: must be an integer in \[1, 1237\]"),
        (dict(label_noise=-0.1), r"data.label_noise=-0.1: must be a number in \[0, 1\]"),
        (dict(label_noise=1.5), r"data.label_noise=1.5: "),
        (dict(label_noise="0.1"), r"data.label_noise='0.1': "),
        (dict(val_size=-1), r"data.val_size=-1: must be an integer in \[0, 1436\]"),
        (dict(val_size=1437), r"data.val_size=1437: "),
        (dict(val_size=1.0), r"data.val_size=1.0: must be a fraction in \[0, 1\) or a count"),
        (dict(val_size=1e-5), r"data.val_size=1e-05: is 0 of 1437 train samples"),
        (dict(seed=-1), r"data.seed=-1: must be an integer >= 0"),
        (dict(augment=True), r"data.augment=True: must be false: digits has no standard augmentation"),
        (dict(foo=1), r"data.options=\['foo'\]: digits takes no options"),
    ],
)
def test_bad_options_raise_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        load_data("digits", "unused", **kwargs)
    assert "\n" not in str(e.value)

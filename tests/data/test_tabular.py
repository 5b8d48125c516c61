"""MNIST-1D (generation, cache, atomic write), sklearn digits split, synthetic tasks."""

import os
import random

import numpy as np
import pytest
import torch

from landscape_sweep.data import load_data
from landscape_sweep.data import tabular as tab


@pytest.fixture(scope="module")
def mnist1d_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def test_mnist1d_default_matches_the_package_and_shapes(mnist1d_root):
    from mnist1d.data import get_dataset_args, make_dataset

    (x, y), (xt, yt), classes = tab.raw_mnist1d(mnist1d_root)
    assert x.shape == (4000, 1, 40) and xt.shape == (1000, 1, 40) and classes == 10
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    ref = make_dataset(get_dataset_args())  # the standard generator with its standard 4000/1000 split
    assert torch.equal(x, torch.from_numpy(ref["x"]).float().unsqueeze(1))
    assert torch.equal(yt, torch.from_numpy(ref["y_test"]))
    b = load_data("mnist1d", mnist1d_root)
    assert b.in_shape == (1, 40) and b.num_classes == 10 and len(b.train[1]) == 4000 and b.val is None
    assert abs(b.train[0].double().mean()) < 1e-6 and abs(b.train[0].double().std() - 1) < 1e-3


def test_mnist1d_cache_is_reused(mnist1d_root, monkeypatch):
    first = tab.raw_mnist1d(mnist1d_root, num_train=80, num_test=20)
    path = tab.mnist1d_cache_path(mnist1d_root, tab.mnist1d_args(num_train=80, num_test=20))
    assert path.exists() and path.parent == mnist1d_root / "mnist1d" and path.name.startswith("mnist1d_")

    def boom(args):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(tab, "_generate_mnist1d", boom)
    second = tab.raw_mnist1d(mnist1d_root, num_train=80, num_test=20)
    assert torch.equal(first[0][0], second[0][0]) and torch.equal(first[1][1], second[1][1])
    assert len(first[0][1]) == 80 and len(first[1][1]) == 20
    other = tab.mnist1d_cache_path(mnist1d_root, tab.mnist1d_args(num_train=80, num_test=20, gen_seed=1))
    assert other != path  # different generator arguments, different file


def test_mnist1d_write_is_atomic_and_keeps_global_rng(tmp_path, monkeypatch):
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (replaced.append((src, dst)), real_replace(src, dst)))
    random.seed(5)
    np.random.seed(5)
    expect_py, expect_np = random.random(), np.random.rand()
    random.seed(5)
    np.random.seed(5)
    tab.raw_mnist1d(tmp_path, num_train=40, num_test=10)
    assert random.random() == expect_py and np.random.rand() == expect_np  # global RNGs untouched
    ((src, dst),) = replaced
    assert os.path.dirname(src) == os.path.dirname(dst) and os.path.basename(dst).startswith("mnist1d_")
    assert os.listdir(os.path.dirname(dst)) == [os.path.basename(dst)]  # no temp file left behind

    def partial_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(tab.torch, "save", partial_save)
    with pytest.raises(OSError, match="disk full"):
        tab.raw_mnist1d(tmp_path, num_train=30, num_test=10)
    assert os.listdir(os.path.dirname(dst)) == [os.path.basename(dst)]  # neither target nor temp file


def test_mnist1d_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match=r"data.options.num_train\+num_test=55: must be a multiple of 10"):
        load_data("mnist1d", tmp_path, num_train=50, num_test=5)
    with pytest.raises(ValueError, match=r"data.options.num_train=0: must be an integer >= 1"):
        load_data("mnist1d", tmp_path, num_train=0)
    with pytest.raises(ValueError, match=r"data.options=\['dim'\]: mnist1d takes only num_train"):
        load_data("mnist1d", tmp_path, dim=3)
    with pytest.raises(ValueError, match=r"data.augment=True: must be false: mnist1d has no standard augmentation"):
        load_data("mnist1d", tmp_path, augment=True)
    assert not (tmp_path / "mnist1d").exists()


def test_digits_fixed_stratified_split():
    (x, y), (xt, yt), classes = tab.raw_digits()
    assert x.shape == (1437, 1, 8, 8) and xt.shape == (360, 1, 8, 8) and classes == 10
    assert float(x.min()) >= 0.0 and float(x.max()) == 1.0
    assert yt[:12].tolist() == [7, 6, 3, 7, 7, 3, 2, 8, 9, 3, 2, 6]
    assert yt.bincount().tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    assert float(xt.double().sum()) == 7021.875 and float(x.double().sum()) == 28085.5
    a, b = load_data("digits", "unused", seed=0), load_data("digits", "unused", seed=7)
    assert torch.equal(a.test[0], b.test[0]) and torch.equal(a.train[1], b.train[1])  # seed does not move it
    assert a.in_shape == (1, 8, 8) and a.augment is None


@pytest.mark.parametrize("kind", ["teacher", "gmm"])
def test_synthetic_deterministic_by_seed(kind):
    opts = dict(kind=kind, num_train=300, num_test=100, dim=7, num_classes=3)
    a, b, c = (load_data("synthetic", "unused", seed=s, **opts) for s in (1, 1, 2))
    assert a.train[0].shape == (300, 7) and a.test[0].shape == (100, 7) and a.in_shape == (7,)
    assert a.num_classes == 3 and set(a.train[1].tolist()) == {0, 1, 2}
    assert torch.equal(a.train[0], b.train[0]) and torch.equal(a.test[1], b.test[1])
    assert not torch.equal(a.train[0], c.train[0])


def test_synthetic_labels_follow_their_generator():
    (x, y), _, _ = tab.raw_synthetic(seed=0, kind="gmm", num_train=2000, dim=5, num_classes=3, spread=8.0)
    means = torch.stack([x[y == k].mean(0) for k in range(3)])  # well separated: nearest mean = label
    nearest = torch.cdist(x, means).argmin(1)
    assert (nearest == y).float().mean() > 0.99
    (x, y), _, _ = tab.raw_synthetic(seed=0, kind="teacher", num_train=500, dim=4, num_classes=2)
    again = tab.raw_synthetic(seed=0, kind="teacher", num_train=500, dim=4, num_classes=2)
    assert torch.equal(y, again[0][1]) and 100 < int(y.sum()) < 400  # both classes, reproducible


@pytest.mark.parametrize(
    "opts, match",
    [
        (dict(kind="blobs"), r"data.options.kind='blobs': must be one of teacher, gmm"),
        (dict(num_classes=1), r"data.options.num_classes=1: must be an integer >= 2"),
        (dict(dim=0), r"data.options.dim=0: "),
        (dict(spread=0), r"data.options.spread=0: must be a finite number > 0"),
        (dict(width=3), r"data.options=\['width'\]: synthetic takes only kind, num_train"),
    ],
)
def test_synthetic_bad_options(opts, match):
    with pytest.raises(ValueError, match=match):
        load_data("synthetic", "unused", **opts)


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"data.name='imagenet': must be one of mnist1d, digits, synthetic, cifar10"):
        load_data("imagenet", "unused")

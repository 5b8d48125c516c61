"""torchvision sets read by the real torchvision classes from tiny files written in their on-disk formats.

torchvision verifies CIFAR and SVHN files against the md5 sums of the official downloads. The tiny files
here cannot match those, so each test registers the md5 of the files it wrote (the check itself still runs
and still rejects a modified file); MNIST/FashionMNIST raw files are only checked for existence.
"""

import hashlib
import pickle
import struct
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets as tvd

from landscape_sweep.data import load_data
from landscape_sweep.data.vision import raw_vision

RNG = np.random.default_rng(0)


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pickle(path, obj):
    path.write_bytes(pickle.dumps(obj))


def _cifar10(root, monkeypatch, n=2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = RNG.integers(0, 10, n).tolist()
        _pickle(folder / name, {"batch_label": name, "labels": labels, "data": data, "filenames": ["x.png"] * n})
        arrays[name] = (data, labels)
    _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072})
    train_list = [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
    monkeypatch.setattr(tvd.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", dict(tvd.CIFAR10.meta, md5=_md5(folder / "batches.meta")))
    train = [arrays[f"data_batch_{i}"] for i in range(1, 6)]
    return (np.concatenate([d for d, _ in train]), sum((lab for _, lab in train), [])), arrays["test_batch"]


def _cifar100(root, monkeypatch, n=3):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    arrays = {}
    for name in ("train", "test"):
        data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = RNG.integers(0, 100, n).tolist()
        _pickle(folder / name, {"fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": data})
        arrays[name] = (data, fine)
    _pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": ["c"] * 20})
    monkeypatch.setattr(tvd.CIFAR100, "train_list", [["train", _md5(folder / "train")]])
    monkeypatch.setattr(tvd.CIFAR100, "test_list", [["test", _md5(folder / "test")]])
    monkeypatch.setattr(tvd.CIFAR100, "meta", dict(tvd.CIFAR100.meta, md5=_md5(folder / "meta")))
    return arrays["train"], arrays["test"]


def _idx(folder, prefix, n):
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, n, dtype=np.uint8)
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x0803, n, 28, 28) + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, n) + labels.tobytes())
    return images, labels


def _mnist(root, cls_name):
    folder = root / cls_name / "raw"
    folder.mkdir(parents=True)
    return _idx(folder, "train", 6), _idx(folder, "t10k", 4)


def _svhn(root, monkeypatch):
    root.mkdir(parents=True, exist_ok=True)
    out, md5 = {}, {}
    for split, n in (("train", 5), ("test", 3)):
        x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # (H, W, C, N) as in the official files
        y = np.array([[10], [1], [2], [10], [9]][:n], dtype=np.uint8)  # 10 is the digit 0
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
        md5[split] = _md5(root / f"{split}_32x32.mat")
    lists = {k: [v[0], v[1], md5.get(k, v[2])] for k, v in tvd.SVHN.split_list.items()}
    monkeypatch.setattr(tvd.SVHN, "split_list", lists)
    return out["train"], out["test"]


def test_cifar10_from_pickled_batches(tmp_path, monkeypatch):
    (x, y), (xt, yt) = _cifar10(tmp_path, monkeypatch)
    (tx, ty), (sx, sy), classes = raw_vision("cifar10", tmp_path)
    assert tx.shape == (10, 3, 32, 32) and classes == 10 and tx.dtype == torch.float32
    assert torch.equal(tx, torch.from_numpy(x).view(-1, 3, 32, 32).float() / 255)  # channel-major rows
    assert ty.tolist() == y and sy.tolist() == yt and torch.equal(sx, torch.from_numpy(xt).view(-1, 3, 32, 32) / 255.0)
    b = load_data("cifar10", tmp_path, augment=True, val_size=2)
    assert b.augment == "crop_flip" and b.in_shape == (3, 32, 32) and len(b.train[1]) == 8 and len(b.val[1]) == 2
    assert len(b.info["mean"]) == 3  # per-channel statistics
    assert load_data("cifar10", tmp_path).augment is None


def test_cifar100_fine_labels(tmp_path, monkeypatch):
    (x, y), (xt, yt) = _cifar100(tmp_path, monkeypatch)
    (tx, ty), (sx, sy), classes = raw_vision("cifar100", tmp_path)
    assert classes == 100 and ty.tolist() == y and sy.tolist() == yt
    assert torch.equal(sx, torch.from_numpy(xt).view(-1, 3, 32, 32).float() / 255)
    assert load_data("cifar100", tmp_path, augment=True).augment == "crop_flip"


@pytest.mark.parametrize("name, cls_name", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_from_idx_files(tmp_path, name, cls_name):
    (x, y), (xt, yt) = _mnist(tmp_path, cls_name)
    (tx, ty), (sx, sy), classes = raw_vision(name, tmp_path)
    assert tx.shape == (6, 1, 28, 28) and sx.shape == (4, 1, 28, 28) and classes == 10
    assert torch.equal(tx, torch.from_numpy(x).unsqueeze(1).float() / 255) and ty.tolist() == y.tolist()
    assert sy.tolist() == yt.tolist()
    b = load_data(name, tmp_path, train_size=3)
    assert b.in_shape == (1, 28, 28) and len(b.train[1]) == 3 and b.augment is None
    with pytest.raises(ValueError, match=f"data.augment=True: must be false: {name} has no standard augmentation"):
        load_data(name, tmp_path, augment=True)


def test_svhn_from_mat_files(tmp_path, monkeypatch):
    (x, y), (xt, yt) = _svhn(tmp_path, monkeypatch)
    (tx, ty), (sx, sy), classes = raw_vision("svhn", tmp_path)
    assert tx.shape == (5, 3, 32, 32) and sx.shape == (3, 3, 32, 32) and classes == 10
    assert torch.equal(tx, torch.from_numpy(x).permute(3, 2, 0, 1).float() / 255)  # torchvision's own layout
    assert ty.tolist() == [0, 1, 2, 0, 9] and sy.tolist() == [0, 1, 2]
    assert load_data("svhn", tmp_path, augment=True).augment == "crop"


@pytest.mark.parametrize(
    "name, cls_name", [("cifar10", "CIFAR10"), ("cifar100", "CIFAR100"), ("mnist", "MNIST"), ("svhn", "SVHN")]
)
def test_missing_files_offline_error(tmp_path, name, cls_name):
    root = tmp_path / "nothing"
    with pytest.raises(FileNotFoundError) as e:
        load_data(name, root)
    assert str(e.value) == (
        f"data.root={root}: {cls_name} files not found or corrupted (offline?); "
        "place them there or set data.download=true"
    )


def test_wrong_checksum_is_still_rejected(tmp_path, monkeypatch):
    _cifar10(tmp_path, monkeypatch)
    monkeypatch.undo()  # back to the official md5 sums: the tiny files do not match them
    with pytest.raises(FileNotFoundError, match="CIFAR10 files not found or corrupted"):
        load_data("cifar10", tmp_path)


def test_failed_download_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(tvd.cifar, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError) as e:
        load_data("cifar10", tmp_path, download=True)
    assert str(e.value) == (
        f"data.root={tmp_path}: downloading CIFAR10 failed (<urlopen error no network>); place the files there by hand"
    )
    monkeypatch.setattr(tvd.mnist, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError, match=r"downloading MNIST failed \(Error downloading") as e:
        load_data("mnist", tmp_path, download=True)
    assert "\n" not in str(e.value)

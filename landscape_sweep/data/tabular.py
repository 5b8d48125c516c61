"""Small offline datasets: MNIST-1D (generated, cached), sklearn digits, and synthetic teacher/GMM tasks.

Each `raw_*` function returns unstandardised `(train, test, num_classes)` with x float32, y int64.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..checks import check_choice, check_int, check_positive, check_seed, fail
from ..files import atomic_open
from .core import Raw, generator


def atomic_save(obj: object, path: Path) -> None:
    """torch.save atomically (`files.atomic_open`): readers never see a partial file."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def check_mnist1d_options(
    num_train: int = 4000, num_test: int = 1000, shuffle_seq: bool = False, gen_seed: int = 42
) -> None:
    """`data.options` of mnist1d (one-line ValueError), checked without generating anything."""
    check_int("data.options.num_train", num_train, 1)
    check_int("data.options.num_test", num_test, 1)
    total = num_train + num_test
    if total % 10:
        fail("data.options.num_train+num_test", total, "must be a multiple of 10 (balanced classes)")
    if not isinstance(shuffle_seq, bool):
        fail("data.options.shuffle_seq", shuffle_seq, "must be true or false")
    check_seed("data.options.gen_seed", gen_seed)


def mnist1d_args(num_train: int = 4000, num_test: int = 1000, shuffle_seq: bool = False, gen_seed: int = 42) -> dict:
    """The `mnist1d` generator arguments for a train/test size (defaults: the standard 4000/1000 set)."""
    from mnist1d.data import get_dataset_args

    check_mnist1d_options(num_train, num_test, shuffle_seq, gen_seed)
    total = num_train + num_test
    args = get_dataset_args(as_dict=True)
    args.update(num_samples=total, train_split=num_train / total, shuffle_seq=bool(shuffle_seq))
    args["seed"] = gen_seed
    args.pop("url")
    return args


def mnist1d_cache_path(root: str | Path, args: dict) -> Path:
    digest = hashlib.sha1(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    return Path(root).expanduser() / "mnist1d" / f"mnist1d_{digest}.pt"


def raw_mnist1d(root: str | Path, **options) -> Raw:
    """MNIST-1D (Greydanus 2020) generated offline; x (N, 1, 40). Cached under `<root>/mnist1d/`."""
    args = mnist1d_args(**options)
    path = mnist1d_cache_path(root, args)
    if path.exists():
        tensors = torch.load(path, weights_only=True)
    else:
        tensors = _generate_mnist1d(args)
        atomic_save(tensors, path)
    return (tensors["x"], tensors["y"]), (tensors["x_test"], tensors["y_test"]), 10


def _generate_mnist1d(args: dict) -> dict[str, Tensor]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    py_state, np_state = random.getstate(), np.random.get_state()  # make_dataset reseeds the global RNGs
    try:
        data = make_dataset(ObjectView(dict(args, train_split=1.0)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = torch.from_numpy(data["x"]).float().unsqueeze(1)
    y = torch.from_numpy(data["y"]).long()
    num_train = round(args["train_split"] * args["num_samples"])
    train, test = slice(None, num_train), slice(num_train, None)
    return {"x": x[train].clone(), "y": y[train].clone(), "x_test": x[test].clone(), "y_test": y[test].clone()}


DIGITS_TEST = 360
DIGITS_SPLIT_SEED = 0


def raw_digits(root: str | Path | None = None) -> Raw:
    """sklearn's 8x8 digits in [0, 1], x (N, 1, 8, 8); a fixed stratified 1437/360 train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.from_numpy(data.data / 16.0).float().view(-1, 1, 8, 8)
    y = torch.from_numpy(data.target).long()
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=DIGITS_TEST, stratify=data.target, random_state=DIGITS_SPLIT_SEED
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx]), 10


SYNTHETIC_KINDS = ("teacher", "gmm")


def check_synthetic_options(
    kind: str = "teacher",
    num_train: int = 2000,
    num_test: int = 1000,
    dim: int = 20,
    num_classes: int = 4,
    hidden: int = 64,
    spread: float = 1.0,
) -> None:
    """`data.options` of the synthetic dataset (one-line ValueError), checked without drawing anything."""
    check_choice("data.options.kind", kind, SYNTHETIC_KINDS)
    for key, value, low in [
        ("num_train", num_train, 1),
        ("num_test", num_test, 1),
        ("dim", dim, 1),
        ("num_classes", num_classes, 2),
        ("hidden", hidden, 1),
    ]:
        check_int(f"data.options.{key}", value, low)
    check_positive("data.options.spread", spread)


def raw_synthetic(
    seed: int = 0,
    kind: str = "teacher",
    num_train: int = 2000,
    num_test: int = 1000,
    dim: int = 20,
    num_classes: int = 4,
    hidden: int = 64,
    spread: float = 1.0,
) -> Raw:
    """Synthetic classification with x (N, dim), seeded by the data seed.

    teacher: x ~ N(0, I), labelled by argmax of a random tanh MLP (dim -> hidden -> num_classes).
    gmm: y uniform, x ~ N(mu_y, I) with class means mu ~ N(0, spread^2 I).
    """
    check_synthetic_options(kind, num_train, num_test, dim, num_classes, hidden, spread)
    gen = generator(seed, "synthetic")
    total = num_train + num_test
    if kind == "teacher":
        x = torch.randn(total, dim, generator=gen, dtype=torch.float64)
        w1 = torch.randn(dim, hidden, generator=gen, dtype=torch.float64) / dim**0.5
        w2 = torch.randn(hidden, num_classes, generator=gen, dtype=torch.float64) / hidden**0.5
        y = (torch.tanh(x @ w1) @ w2).argmax(1)
    else:
        means = spread * torch.randn(num_classes, dim, generator=gen, dtype=torch.float64)
        y = torch.randint(0, num_classes, (total,), generator=gen)
        x = means[y] + torch.randn(total, dim, generator=gen, dtype=torch.float64)
    x = x.float()
    return (x[:num_train], y[:num_train]), (x[num_train:], y[num_train:]), num_classes

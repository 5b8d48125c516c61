"""`load_data`: one entry point from a dataset name and its options to a standardised DataBundle."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

from ..checks import check_choice, check_int, check_mapping, check_seed, fail
from .core import DataBundle, build_bundle
from .ood import check_ood, shifted_test_sets
from .tabular import check_mnist1d_options, check_synthetic_options, raw_digits, raw_mnist1d, raw_synthetic
from .vision import VISION, raw_vision

DATASETS: tuple[str, ...] = ("mnist1d", "digits", "synthetic", *VISION)

# dataset-specific options accepted through **options
_OPTIONS: dict[str, tuple[str, ...]] = {
    "mnist1d": ("num_train", "num_test", "shuffle_seq", "gen_seed"),
    "digits": (),
    "synthetic": tuple(p for p in inspect.signature(raw_synthetic).parameters if p != "seed"),
    **{name: () for name in VISION},
}


# the input shape of each dataset's samples (synthetic: (data.options.dim,)); checked against the loaded data by a test
SHAPES: dict[str, tuple[int, ...]] = {
    "mnist1d": (1, 40),
    "digits": (1, 8, 8),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "svhn": (3, 32, 32),
}


def data_shape(name: str, options: dict[str, Any] | None = None) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of dataset `name` with `options`, known without loading it."""
    options = options or {}
    if name == "synthetic":
        return (int(options.get("dim", 20)),), int(options.get("num_classes", 4))
    return SHAPES[name], VISION[name][1] if name in VISION else 10


# the train pool of each dataset (before the validation split and `data.train_size`; mnist1d and synthetic:
# `data.options.num_train`), so a batch larger than the data is sized as the whole train set it really is
TRAIN_POOL: dict[str, int] = {"digits": 1437, "cifar10": 50000, "cifar100": 50000, "mnist": 60000,
                              "fashion_mnist": 60000, "svhn": 73257}  # fmt: skip


def train_pool(name: str, options: dict[str, Any] | None = None) -> int:
    """Samples in dataset `name`'s train split with `options`, known without loading it."""
    defaults = {"mnist1d": 4000, "synthetic": 2000}
    if name in defaults:
        return int((options or {}).get("num_train", defaults[name]))
    return TRAIN_POOL[name]


def check_options(name: str, options: Any) -> None:
    """`data.options` of dataset `name`: a mapping of its own keys with valid values (one-line ValueError; nothing
    is loaded or generated, so the pre-check catches what loading would fail on)."""
    check_choice("data.name", name, DATASETS)
    check_mapping("data.options", options, _OPTIONS[name], nullable=True)
    options = options or {}
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        allowed = ", ".join(_OPTIONS[name])
        fail("data.options", unknown, f"{name} takes only {allowed}" if allowed else f"{name} takes no options")
    if name == "mnist1d":
        check_mnist1d_options(**options)
    elif name == "synthetic":
        check_synthetic_options(**options)


def load_data(
    name: str,
    root: str | Path,
    *,
    train_size: int | None = None,
    label_noise: float = 0.0,
    val_size: int | float = 0,
    seed: int = 0,
    download: bool = False,
    augment: bool = False,
    ood: list[dict[str, Any]] | None = None,
    **options: Any,
) -> DataBundle:
    """Load dataset `name` as in-memory tensors (CPU; move with `.to(device)`).

    train_size: seeded subset of the train split (None: all). label_noise: fraction of train labels replaced
    by a different random class. val_size: count or fraction held out from the train split (before
    subsetting). seed: the data seed (subset, noise, validation split, synthetic data, loader order).
    augment: enable the dataset's standard augmentation (CIFAR crop+flip, SVHN crop); datasets without one
    reject it. ood: shifted test sets (`data.ood`, see ood.py), standardised like the test split. options:
    dataset-specific (mnist1d: num_train, num_test, shuffle_seq, gen_seed; synthetic:
    kind, num_train, num_test, dim, num_classes, hidden, spread).
    """
    check_options(name, options)
    seed = check_seed("data.seed", check_int("data.seed", seed, 0))
    kind = VISION[name][2] if name in VISION else None
    if augment and kind is None:
        fail("data.augment", augment, f"must be false: {name} has no standard augmentation")
    specs = check_ood(name, ood, options)

    if name == "mnist1d":
        train, test, num_classes = raw_mnist1d(root, **options)
    elif name == "digits":
        train, test, num_classes = raw_digits()
    elif name == "synthetic":
        train, test, num_classes = raw_synthetic(seed, **options)
    else:
        train, test, num_classes = raw_vision(name, root, download=download)

    bundle = build_bundle(
        name, train, test, num_classes,
        train_size=train_size, label_noise=label_noise, val_size=val_size, seed=seed,
        augment=kind if augment else None, ood=shifted_test_sets(name, root, test, specs, options),
    )  # fmt: skip
    return dataclasses.replace(bundle, ood_controls=tuple(s["name"] for s in specs if s["control"]))

"""DataBundle and the dataset-independent steps: validation hold-out, subset, label noise, standardisation.

Every step draws from its own seeded generator (`generator(seed, tag)`), so changing one option never moves
another: the validation split does not depend on `train_size`, and subsets of growing `train_size` are nested.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_fraction, check_int, fail, is_int

Split = tuple[Tensor, Tensor]
Raw = tuple[Split, Split, int]  # (train, test, num_classes) as a dataset's reader returns them

_TAGS = {"val": 1, "subset": 2, "noise": 3, "synthetic": 4, "shuffle": 5, "augment": 6, "corrupt": 7}


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. (seed, epoch)); a pure function of its arguments."""
    if not all(is_int(part) and part >= 0 for part in parts):
        fail("seed", parts, "seeds and epochs must be integers >= 0")
    lo, hi = np.random.SeedSequence(list(parts)).generate_state(2)
    return (int(hi) << 31) ^ int(lo)


def generator(seed: int, tag: str, *more: int) -> torch.Generator:
    """A CPU generator for one named random step of the data pipeline."""
    return torch.Generator().manual_seed(mix_seed(seed, _TAGS[tag], *more))


@dataclass
class DataBundle:
    """In-memory splits of one dataset, standardised and ready for training.

    `train`/`val`/`test` are `(x, y)` pairs: x float32 `(N, *in_shape)`, y int64 `(N,)`; `ood` the shifted test
    sets of `data.ood` by name (ood.py), standardised like `test`, `ood_controls` the names of those that are
    controls (drawn like the test set, no shift: the sampling noise of an OOD gap). `augment` names the augmentation a
    TensorLoader applies to training batches (None: none). `info` records how the bundle was made (sizes,
    standardisation statistics, which train labels are noisy); JSON-serialisable.
    """

    name: str
    in_shape: tuple[int, ...]
    num_classes: int
    train: Split
    val: Split | None
    test: Split
    augment: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, Split] = field(default_factory=dict)
    ood_controls: tuple[str, ...] = ()

    def to(self, device: torch.device | str) -> DataBundle:
        """A bundle with every tensor moved to `device` (once; call before training)."""

        def move(split: Split | None) -> Split | None:
            return None if split is None else (split[0].to(device), split[1].to(device))

        ood = {name: move(split) for name, split in self.ood.items()}
        return dataclasses.replace(self, train=move(self.train), val=move(self.val), test=move(self.test), ood=ood)


def val_count(val_size: int | float, num_train: int) -> int:
    """Number of validation samples: an int count or a float fraction of the `num_train` train samples."""
    if isinstance(val_size, float):
        allowed = f"must be a fraction in [0, 1) or a count in [0, {num_train - 1}]"
        if not 0.0 <= val_size < 1.0:
            fail("data.val_size", val_size, allowed)
        count = round(val_size * num_train)
        if val_size > 0 and count == 0:
            fail("data.val_size", val_size, f"is 0 of {num_train} train samples; {allowed}")
        return min(count, num_train - 1)
    return check_int("data.val_size", val_size, 0, num_train - 1)


def split_val(train: Split, val_size: int | float, seed: int) -> tuple[Split, Split | None]:
    """Hold out a seeded random validation set from `train`; the rest keeps its original order."""
    x, y = train
    num_val = val_count(val_size, len(y))
    if num_val == 0:
        return train, None
    perm = torch.randperm(len(y), generator=generator(seed, "val"))
    val_idx, rest = perm[:num_val], perm[num_val:].sort().values
    return (x[rest], y[rest]), (x[val_idx], y[val_idx])


def subset(train: Split, train_size: int | None, seed: int) -> Split:
    """A seeded random subset of `train_size` samples (None: all). Subsets for growing sizes are nested."""
    if train_size is None:
        return train
    pool_size = len(train[1])
    size = check_int("data.train_size", train_size, 1, pool_size)
    idx = torch.randperm(pool_size, generator=generator(seed, "subset"))[:size]
    return train[0][idx], train[1][idx]


def add_label_noise(y: Tensor, fraction: float, num_classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """Replace exactly round(fraction * n) labels by a different, uniformly random class.

    Returns the new labels and the indices that were changed.
    """
    num_noisy = round(check_fraction("data.label_noise", fraction) * len(y))
    if num_noisy and num_classes < 2:
        fail("data.label_noise", fraction, f"must be 0 with {num_classes} class (noise needs >= 2 classes)")
    gen = generator(seed, "noise")
    idx = torch.randperm(len(y), generator=gen)[:num_noisy]
    shift = torch.randint(1, max(num_classes, 2), (num_noisy,), generator=gen)
    y = y.clone()
    y[idx] = (y[idx] + shift) % num_classes
    return y, idx.sort().values


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std per channel (dim 1) over all other dims, in float64; std floored (no division by 0)."""
    dims = [d for d in range(x.ndim) if d != 1]
    x64 = x.double()
    mean = x64.mean(dims)
    std = x64.std(dims, correction=0).clamp_min(1e-8)
    return mean, std


def standardise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(x - mean) / std per channel (dim 1), returned as float32."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return ((x.double() - mean.view(shape)) / std.view(shape)).float()


def build_bundle(
    name: str,
    train: Split,
    test: Split,
    num_classes: int,
    *,
    train_size: int | None,
    label_noise: float,
    val_size: int | float,
    seed: int,
    augment: str | None,
    ood: dict[str, Split] | None = None,
) -> DataBundle:
    """Apply the common pipeline to raw (unstandardised) splits and shifted test sets (`ood`, by name).

    Order: validation hold-out -> statistics of the remaining train pool -> train subset -> label noise
    (train only) -> standardise every split with the pool statistics. The statistics do not depend on
    `train_size`, so a train-size sweep sees identically scaled inputs.
    """
    pool, val = split_val(train, val_size, seed)
    mean, std = channel_stats(pool[0])
    x_tr, y_tr = subset(pool, train_size, seed)
    y_tr, noisy = add_label_noise(y_tr, label_noise, num_classes, seed)

    def norm(split: Split) -> Split:
        return standardise(split[0], mean, std), split[1].long()

    info = {
        "num_train": len(y_tr),
        "num_val": 0 if val is None else len(val[1]),
        "num_test": len(test[1]),
        "num_ood": {name: len(split[1]) for name, split in (ood or {}).items()},
        "mean": mean.tolist(),
        "std": std.tolist(),
        "num_noisy_labels": len(noisy),
        "noisy_indices": noisy.tolist(),
    }
    return DataBundle(
        name=name,
        in_shape=tuple(train[0].shape[1:]),
        num_classes=num_classes,
        train=norm((x_tr, y_tr)),
        val=None if val is None else norm(val),
        test=norm(test),
        augment=augment,
        info=info,
        ood={name: norm(split) for name, split in (ood or {}).items()},
    )

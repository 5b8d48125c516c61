"""TensorLoader: minibatches over in-memory tensors, with per-epoch seeded shuffling and batch augmentation.

The order and the augmentation of epoch `e` are a pure function of `(seed, e)`: the permutation comes from a
CPU `torch.Generator` seeded with `mix_seed(seed, e)`, so a run resumed at epoch `e` sees bit-identical
batches. Lightning calls `set_epoch` itself: `lightning_fabric.utilities.data._set_sampler_epoch` looks for
`loader.sampler.set_epoch` (and `loader.batch_sampler.sampler.set_epoch`) at the start of every epoch; our
`sampler` forwards it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .core import generator

AUGMENTATIONS = ("crop_flip", "crop")  # crop_flip: CIFAR (pad 4 + h-flip); crop: SVHN (pad 4)
PAD = 4


def random_crop(x: Tensor, g: torch.Generator, pad: int = PAD) -> Tensor:
    """Per-sample random crop of a zero-padded batch (N, C, H, W): every sample gets its own offset."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, n), generator=g)).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    b = torch.arange(n, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[b, ch, rows, cols]


def random_hflip(x: Tensor, g: torch.Generator) -> Tensor:
    """Flip each sample horizontally with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def augment_batch(x: Tensor, kind: str, g: torch.Generator) -> Tensor:
    """Apply augmentation `kind` to one image batch, drawing randomness from `g`."""
    x = random_crop(x, g)
    return random_hflip(x, g) if kind == "crop_flip" else x


class _EpochSampler:
    """What Lightning sees as the loader's sampler: forwards `set_epoch`, iterates the epoch's order."""

    def __init__(self, loader: TensorLoader):
        self.loader = loader

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(self.loader.order().tolist())

    def __len__(self) -> int:
        return self.loader.num_samples


class TensorLoader:
    """An iterable of `(x, y)` minibatches over tensors on their own device (no per-sample overhead).

        shuffle: a new permutation each epoch, seeded by `(seed, epoch)`. augment: None, "crop_flip" or "crop",
        applied batch-wise on the tensors' device with randomness seeded by `(seed, epoch)` as well. Call
        `set_epoch(e)` before iterating epoch `e` (Lightning does it through `.sampler`). Without `set_epoch`
    the loader stays at its current epoch (0 at first), so iterating twice gives the same batches.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        augment: str | None = None,
    ):
        if len(x) != len(y):
            raise ValueError(f"x, y: got {len(x)} inputs and {len(y)} labels; they must match")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: got {batch_size!r}; allowed: an integer >= 1")
        if augment is not None and augment not in AUGMENTATIONS:
            raise ValueError(f"augment: got {augment!r}; allowed: None, {', '.join(AUGMENTATIONS)}")
        if augment is not None and x.ndim != 4:
            raise ValueError(f"augment: {augment!r} needs images (N, C, H, W); got x of shape {tuple(x.shape)}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: got {seed!r}; allowed: an integer >= 0")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.drop_last, self.augment = drop_last, augment
        self.epoch = 0
        self.sampler = _EpochSampler(self)
        self.batch_sampler = None  # Lightning reads both attributes when a loader has a `sampler`

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def set_epoch(self, epoch: int) -> None:
        """Select epoch `epoch`'s order and augmentation (a pure function of `(seed, epoch)`)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: got {epoch!r}; allowed: an integer >= 0")
        self.epoch = epoch

    def order(self) -> Tensor:
        """Sample indices of the current epoch, on the CPU."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        return torch.randperm(self.num_samples, generator=generator(self.seed, "shuffle", self.epoch))

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx = self.order().to(self.x.device) if self.shuffle else None
        g = generator(self.seed, "augment", self.epoch) if self.augment else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            if idx is None:
                x, y = self.x[sl], self.y[sl]
            else:
                x, y = self.x[idx[sl]], self.y[idx[sl]]
            if g is not None:
                x = augment_batch(x, self.augment, g)
            yield x, y

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

from ..checks import check_choice, check_int, fail
from .core import generator

AUGMENTATIONS = ("crop_flip", "crop")  # crop_flip: CIFAR (pad 4 + h-flip); crop: SVHN (pad 4)
PAD = 4


def random_crop(x: Tensor, gen: torch.Generator, pad: int = PAD) -> Tensor:
    """Per-sample random crop of a zero-padded batch (N, C, H, W): every sample gets its own offset."""
    batch, channels, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, batch), generator=gen)).to(x.device)
    rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
    samples = torch.arange(batch, device=x.device)[:, None, None, None]
    chans = torch.arange(channels, device=x.device)[None, :, None, None]
    return padded[samples, chans, rows, cols]


def random_hflip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Flip each sample horizontally with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def augment_batch(x: Tensor, kind: str, gen: torch.Generator) -> Tensor:
    """Apply augmentation `kind` to one image batch, drawing randomness from `gen`."""
    x = random_crop(x, gen)
    return random_hflip(x, gen) if kind == "crop_flip" else x


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
    Without drop_last, a final batch of one sample is merged into the batch before it (BatchNorm cannot train on
    one sample; e.g. 257 samples in batches of 128 give 128 + 129): every sample is still served every epoch.
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
            fail("len(x), len(y)", (len(x), len(y)), "inputs and labels must match")
        batch_size = check_int("batch_size", batch_size)
        check_choice("augment", augment, (None, *AUGMENTATIONS))
        if augment is not None and x.ndim != 4:
            fail("augment", augment, f"needs images (N, C, H, W), not x of shape {tuple(x.shape)}")
        seed = check_int("seed", seed, 0)
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
        self.epoch = check_int("epoch", epoch, 0)

    def order(self) -> Tensor:
        """Sample indices of the current epoch, on the CPU."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        return torch.randperm(self.num_samples, generator=generator(self.seed, "shuffle", self.epoch))

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        if self.drop_last or (rest == 1 and full > 0):  # a 1-sample remainder joins the last full batch
            return full
        return full + int(rest > 0)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.order().to(self.x.device) if self.shuffle else None
        gen = generator(self.seed, "augment", self.epoch) if self.augment else None
        batches = len(self)
        for index in range(batches):
            last = index == batches - 1 and not self.drop_last
            batch = slice(index * self.batch_size, self.num_samples if last else (index + 1) * self.batch_size)
            if order is None:
                x, y = self.x[batch], self.y[batch]
            else:
                x, y = self.x[order[batch]], self.y[order[batch]]
            if gen is not None:
                x = augment_batch(x, self.augment, gen)
            yield x, y

"""TensorLoader: coverage, per-epoch seeded order, drop_last, augmentation, and Lightning's set_epoch."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from landscape_sweep.data import TensorLoader
from landscape_sweep.data.loader import PAD, augment_batch


def _ids(n=10):
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    return x, torch.arange(n)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return torch.cat([y for _, y in loader])


def test_unshuffled_keeps_order_and_last_partial_batch():
    x, y = _ids(10)
    loader = TensorLoader(x, y, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    assert torch.equal(torch.cat([b[0] for b in batches]), x)


def test_drop_last_and_len():
    x, y = _ids(10)
    loader = TensorLoader(x, y, batch_size=4, shuffle=True, drop_last=True)
    batches = list(loader)
    assert len(loader) == 2 == len(batches) and all(len(b[1]) == 4 for b in batches)
    assert len(TensorLoader(x, y, batch_size=10, drop_last=True)) == 1
    assert len(TensorLoader(x, y, batch_size=11, drop_last=True)) == 0
    assert len(TensorLoader(x, y, batch_size=11)) == 1


def test_shuffle_covers_all_samples_differs_between_epochs_and_is_reproducible():
    x, y = _ids(50)
    loader = TensorLoader(x, y, batch_size=8, shuffle=True, seed=3)
    e0, e1 = _epoch(loader, 0), _epoch(loader, 1)
    assert sorted(e0.tolist()) == sorted(e1.tolist()) == list(range(50))
    assert not torch.equal(e0, e1) and not torch.equal(e0, y)
    fresh = TensorLoader(x, y, batch_size=8, shuffle=True, seed=3)  # "resumed" at epoch 1
    assert torch.equal(_epoch(fresh, 1), e1) and torch.equal(_epoch(fresh, 0), e0)
    assert torch.equal(_epoch(loader, 1), e1)  # iterating twice in one epoch gives the same order
    assert not torch.equal(_epoch(TensorLoader(x, y, batch_size=8, shuffle=True, seed=4), 0), e0)
    assert torch.equal(torch.tensor(list(loader.sampler)), e1)  # the sampler view reports the order
    assert len(loader.sampler) == 50


def _images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 6, generator=g, dtype=torch.float64), torch.arange(n)


def _windows(img):
    padded = F.pad(img, (PAD, PAD, PAD, PAD))
    h, w = img.shape[-2:]
    return [padded[:, i : i + h, j : j + w] for i in range(2 * PAD + 1) for j in range(2 * PAD + 1)]


@pytest.mark.parametrize("kind", ["crop", "crop_flip"])
def test_augmentation_is_a_padded_crop_and_flip(kind):
    x, _ = _images()
    out = augment_batch(x, kind, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    flipped = 0
    for orig, aug in zip(x, out):
        plain = any(torch.equal(aug, w) for w in _windows(orig))
        mirrored = any(torch.equal(aug.flip(-1), w) for w in _windows(orig))
        assert plain or mirrored
        flipped += not plain
    assert flipped == 0 if kind == "crop" else 16 < flipped < 48
    assert not torch.equal(out, x)


def test_augmentation_is_seeded_per_epoch_and_leaves_order_alone():
    x, y = _images()
    aug = TensorLoader(x, y, batch_size=16, shuffle=True, seed=1, augment="crop_flip")
    plain = TensorLoader(x, y, batch_size=16, shuffle=True, seed=1)

    def run(loader, epoch):
        loader.set_epoch(epoch)
        xs, ys = zip(*loader)
        return torch.cat(xs), torch.cat(ys)

    x0, y0 = run(aug, 0)
    assert torch.equal(y0, run(plain, 0)[1])
    assert torch.equal(run(aug, 0)[0], x0)  # same (seed, epoch): bit-identical
    x1, y1 = run(aug, 1)
    back = torch.empty_like(x1)
    back[y1] = x1
    fwd = torch.empty_like(x0)
    fwd[y0] = x0
    assert not torch.equal(back, fwd)  # same samples, different augmentation in another epoch
    assert x0.shape == x.shape


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), r"batch_size=0: must be an integer >= 1"),
        (dict(batch_size=2.0), r"batch_size=2.0: "),
        (dict(batch_size=2, augment="cutout"), r"augment='cutout': must be one of None, crop_flip, crop"),
        (dict(batch_size=2, augment="crop"), r"augment='crop': needs images \(N, C, H, W\), not x of shape \(10, 1\)"),
        (dict(batch_size=2, seed=-1), r"seed=-1: must be an integer >= 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    x, y = _ids(10)
    with pytest.raises(ValueError, match=match):
        TensorLoader(x, y, **kwargs)


def test_bad_lengths_and_epoch():
    x, y = _ids(10)
    with pytest.raises(ValueError, match=r"len\(x\), len\(y\)=\(10, 9\): inputs and labels must match"):
        TensorLoader(x, y[:9], 2)
    with pytest.raises(ValueError, match="epoch=-1: "):
        TensorLoader(x, y, 2).set_epoch(-1)


class _Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 2)
        self.seen: dict[int, list[int]] = {}
        self.val_seen: list[int] = []

    def training_step(self, batch, _):
        x, y = batch
        self.seen.setdefault(self.current_epoch, []).extend(y.tolist())
        return F.cross_entropy(self.lin(x), y % 2)

    def validation_step(self, batch, _):
        self.val_seen.extend(batch[1].tolist())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_sets_the_epoch_and_counts_batches():
    x, y = _ids(40)
    train = TensorLoader(x, y, batch_size=8, shuffle=True, seed=7)
    val = TensorLoader(x[:12], y[:12], batch_size=5)
    model = _Recorder()
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, train, val)
    assert trainer.num_training_batches == 5 and trainer.num_val_batches == [3]
    ref = TensorLoader(x, y, batch_size=8, shuffle=True, seed=7)
    assert model.seen[0] == _epoch(ref, 0).tolist()
    assert model.seen[1] == _epoch(ref, 1).tolist()
    assert model.seen[0] != model.seen[1]
    assert model.val_seen == list(range(12)) * 2


def test_lightning_resume_from_checkpoint_replays_the_epoch_order(tmp_path):
    x, y = _ids(24)
    kw = dict(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu",
    )  # fmt: skip
    full = _Recorder()
    pl.Trainer(max_epochs=3, **kw).fit(full, TensorLoader(x, y, 6, shuffle=True, seed=2))
    first = _Recorder()
    trainer = pl.Trainer(max_epochs=1, **kw)
    trainer.fit(first, TensorLoader(x, y, 6, shuffle=True, seed=2))
    trainer.save_checkpoint(tmp_path / "e1.ckpt")
    resumed = _Recorder()
    pl.Trainer(max_epochs=3, **kw).fit(
        resumed, TensorLoader(x, y, 6, shuffle=True, seed=2), ckpt_path=tmp_path / "e1.ckpt"
    )
    assert sorted(resumed.seen) == [1, 2]
    assert resumed.seen[1] == full.seen[1] and resumed.seen[2] == full.seen[2]
    assert full.seen[1] != full.seen[2]


def test_one_sample_last_batch_is_merged():
    """BatchNorm cannot train on one sample: 9 samples in batches of 4 are served as 4 + 5, none dropped."""
    x, y = torch.arange(9.0)[:, None], torch.arange(9)
    for shuffle in (False, True):
        sizes = [len(b) for b, _ in TensorLoader(x, y, batch_size=4, shuffle=shuffle, seed=0)]
        assert sizes == [4, 5]
    assert [len(b) for b, _ in TensorLoader(x, y, batch_size=3)] == [3, 3, 3]

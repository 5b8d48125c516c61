"""Lightning callbacks of a cell's training run and the checkpoint IO its Trainer writes through."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from landscape_sweep.files import atomic_open


class SameDirCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes each file beside its final place (`results.atomic_open`).

    Lightning's default goes through an fsspec transaction: a temp file in the system temp dir ($TMPDIR), moved
    with `shutil.move`, which across file systems copies into the final name (a reader or a kill then sees a
    partial `last.ckpt`). Here: a unique temp file in the same directory, fsync, a new file's mode, rename.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"storage_options={storage_options!r}: must be None (local checkpoint files only)")
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


class EpochCheckpoints(pl.Callback):
    """Save `last.ckpt` after every epoch (for resuming) and `epoch<e>.ckpt` after each listed epoch `e`.

    `e` counts finished epochs (1-based); the listed ones are the points of the sharpness trajectory
    (`landscape.checkpoint_epochs`). Files are written through the Trainer's checkpoint IO; the cell's Trainer
    uses `SameDirCheckpointIO`, so each write is atomic, stays on the checkpoint's file system and is readable
    like any new file.
    """

    def __init__(self, dirpath: str | Path, epochs: Iterable[int]):
        self.dirpath = Path(dirpath)
        self.epochs = sorted(set(int(e) for e in epochs))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs:
            trainer.save_checkpoint(self.dirpath / f"epoch{epoch}.ckpt", weights_only=False)
        trainer.save_checkpoint(self.dirpath / "last.ckpt", weights_only=False)


class StopAtCriterion(pl.Callback):
    """Stop training once the epoch's mean training loss is <= `train_loss` or its accuracy >= `train_acc`.

    Training to a fixed criterion makes cells comparable (Jiang et al. 2020 train every model to the same
    cross-entropy); `trainer.max_epochs` stays the cap. `reached_epoch` is the first epoch (1-based) that met the
    criterion, None if none did; it is kept in checkpoints, so a resumed run knows it.
    """

    def __init__(self, *, train_loss: float | None = None, train_acc: float | None = None, prefix: str = ""):
        self.criterion = {k: v for k, v in (("train_loss", train_loss), ("train_acc", train_acc)) if v is not None}
        self.prefix = prefix
        self.reached_epoch: int | None = None

    def met(self, metrics: dict[str, Any]) -> bool:
        loss, acc = metrics.get(f"{self.prefix}train/loss"), metrics.get(f"{self.prefix}train/acc")
        by_loss = "train_loss" in self.criterion and loss is not None and float(loss) <= self.criterion["train_loss"]
        by_acc = "train_acc" in self.criterion and acc is not None and float(acc) >= self.criterion["train_acc"]
        return by_loss or by_acc

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.reached_epoch is None and self.met(trainer.callback_metrics):
            self.reached_epoch = trainer.current_epoch + 1
        if self.reached_epoch is not None:
            trainer.should_stop = True

    def record(self) -> dict[str, Any]:
        """The endpoint's `stop` field of results.json."""
        return {
            "criterion": dict(self.criterion),
            "reached": self.reached_epoch is not None,
            "epoch": self.reached_epoch,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"reached_epoch": self.reached_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reached_epoch = state_dict.get("reached_epoch")

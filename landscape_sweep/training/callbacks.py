"""Lightning callbacks of a cell's training run and the checkpoint IO its Trainer writes through."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_utilities.core.apply_func import apply_to_collection
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

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


SNAPSHOT_S = 1.0  # seconds between in-memory copies of the last finished epoch (EpochCheckpoints)


class EpochCheckpoints(pl.Callback):
    """`epoch<e>.ckpt` after each listed epoch `e`, and `last.ckpt` (for resuming) at most every `every_s` seconds,
    plus whenever the run is interrupted.

    `e` counts finished epochs (1-based); the listed ones are the points of the sharpness trajectory
    (`landscape.checkpoint_epochs`). Writing `last.ckpt` after every epoch costs more than a small model's epoch, so
    between writes the state of the last finished epoch is kept in memory (a copy of its tensors) and written when
    `every_s` seconds have passed since the last write, when training is interrupted (Ctrl-C, SIGTERM through
    Lightning's handler: `on_exception`) and when a launcher requeues the job (`save_pending`, called from its
    time-limit/preemption handler). The copy is refreshed after an epoch when `SNAPSHOT_S` seconds have passed
    since the last one (a copy costs ~4 ms for a small MLP, as much as a few of its steps), so an interrupt loses
    at most the current epoch and about a second; a SIGTERM through Lightning loses nothing (Lightning stops at
    the epoch's end, and that state is written). A resumed run always restarts at an epoch boundary.
    `every_s=0` writes every epoch. Files are written through the Trainer's checkpoint IO; the
    cell's Trainer uses `SameDirCheckpointIO`, so each write is atomic and stays on the checkpoint's file system.
    A diverged run (non-finite loss) writes nothing more.
    """

    def __init__(self, dirpath: str | Path, epochs: Iterable[int], every_s: float = 0.0):
        self.dirpath = Path(dirpath)
        self.epochs = sorted(set(int(e) for e in epochs))
        self.every_s = float(every_s)
        self._pending: dict[str, Any] | None = None  # the last finished epoch's checkpoint, not yet written
        self._trainer: pl.Trainer | None = None
        self._written = self._copied = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trainer, self._written, self._copied = trainer, time.monotonic(), 0.0
        _ACTIVE.add(self)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or getattr(pl_module, "diverged", False):
            return
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs:
            trainer.save_checkpoint(self.dirpath / f"epoch{epoch}.ckpt", weights_only=False)
        now = time.monotonic()
        if now - self._written >= self.every_s:
            self._pending = None
            self._save(trainer.save_checkpoint)
        elif now - self._copied >= SNAPSHOT_S:  # a copy: the live tensors move on with training
            state = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
            self._pending = apply_to_collection(state, torch.Tensor, lambda t: t.detach().clone())
            self._copied = now

    def _save(self, write: Any) -> None:
        write(self.dirpath / "last.ckpt")
        self._written = time.monotonic()

    def save_pending(self) -> None:
        """Write the last finished epoch's state to `last.ckpt` if it is not written yet."""
        state, self._pending = self._pending, None
        if state is not None and self._trainer is not None:
            io = self._trainer.strategy.checkpoint_io
            self._save(lambda path: io.save_checkpoint(state, path))

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        epochs = trainer.fit_loop.epoch_progress.current
        at_boundary = epochs.completed == epochs.started  # Lightning raises SIGTERM's exception after an epoch's end
        if isinstance(exception, SIGTERMException) and at_boundary and not getattr(pl_module, "diverged", False):
            self._pending = None  # the live state is the last finished epoch's
            self._save(trainer.save_checkpoint)
        self.save_pending()
        _ACTIVE.discard(self)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _ACTIVE.discard(self)


_ACTIVE: set[EpochCheckpoints] = set()  # the training runs of this process


def save_pending() -> None:
    """Write every running training's unwritten `last.ckpt` now: what a launcher calls before the job is requeued
    or killed (submitit's time-limit/preemption handler), so the requeued cell loses no finished epoch."""
    for callback in list(_ACTIVE):
        callback.save_pending()


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

"""Lightning callbacks of a cell's training run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytorch_lightning as pl


class EpochCheckpoints(pl.Callback):
    """Save `last.ckpt` after every epoch (for resuming) and `epoch<e>.ckpt` after each listed epoch `e`.

    `e` counts finished epochs (1-based); the listed ones are the points of the sharpness trajectory
    (`landscape.checkpoint_epochs`). Lightning writes checkpoints atomically (temp file, then move).
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

"""Lightning callbacks of a cell's training run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytorch_lightning as pl


class EpochCheckpoints(pl.Callback):
    """Save a full checkpoint `epoch<e>.ckpt` after each listed epoch `e` (1-based count of finished epochs).

    These are the points of the sharpness trajectory (`landscape.checkpoint_epochs`); `last.ckpt` for resuming
    is ModelCheckpoint's job.
    """

    def __init__(self, dirpath: str | Path, epochs: Iterable[int]):
        self.dirpath = Path(dirpath)
        self.epochs = sorted(set(int(e) for e in epochs))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs and not trainer.sanity_checking:
            trainer.save_checkpoint(self.dirpath / f"epoch{epoch}.ckpt")

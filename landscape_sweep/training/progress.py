"""Progress of an endpoint's training: Lightning's TQDM bar on a terminal, one compact line per epoch elsewhere.

`progress_callbacks(trainer_cfg, seed)` is what a cell adds to its Trainer's callbacks: nothing when the user turned
progress off (`trainer.enable_progress_bar=false`) or when stderr is a terminal (Lightning adds its own TQDM bar),
else an `EpochLines`, which replaces the bar (a bar redrawn into a log file or pipe is unreadable):

    seed 0 epoch 5/30 loss 0.81 acc 0.71 3.1 s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar


class EpochLines(ProgressBar):
    """One line per training epoch on `stream` (default stderr, where the bar would be): epoch, the epoch's mean
    training loss and accuracy (`{prefix}train/loss|acc`), validation accuracy when there is one, wall seconds."""

    def __init__(self, label: str, prefix: str = "", stream: TextIO | None = None) -> None:
        super().__init__()
        self.label, self.prefix, self.stream = label, prefix, stream
        self._enabled = True
        self._t0 = time.perf_counter()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def line(self, trainer: pl.Trainer) -> str:
        """`seed 0 epoch 5/30 loss 0.81 acc 0.71 3.1 s` from the trainer's epoch metrics."""
        m, p = trainer.callback_metrics, self.prefix
        total = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else "?"
        parts = [f"{self.label} epoch {trainer.current_epoch + 1}/{total}"]
        for name, key in (("loss", "train/loss"), ("acc", "train/acc"), ("val_acc", "val/acc")):
            if f"{p}{key}" in m:
                parts.append(f"{name} {float(m[f'{p}{key}']):.3g}")
        return " ".join([*parts, f"{time.perf_counter() - self._t0:.1f} s"])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero and not trainer.sanity_checking:
            print(self.line(trainer), file=self.stream or sys.stderr, flush=True)


def progress_callbacks(
    trainer_cfg: Mapping[str, Any], seed: int, stream: TextIO | None = None, name: str | None = None
) -> list[pl.Callback]:
    """The progress display of the endpoint of `seed`: [] (progress off, or a terminal: Lightning's own TQDM bar)
    or [EpochLines] (non-interactive output: logs, pipes, SLURM). `name`: the run's label and metric prefix
    (default `seed<seed>`; e.g. `spawn4/seed1` for a spawned child)."""
    if not trainer_cfg.get("enable_progress_bar", True):
        return []
    out = stream or sys.stderr
    if out.isatty():
        return []
    if name is not None:
        return [EpochLines(name, prefix=f"{name}/", stream=stream)]
    return [EpochLines(f"seed {seed}", prefix=f"seed{seed}/", stream=stream)]

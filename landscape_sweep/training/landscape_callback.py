"""The in-training half of the landscape analysis: sharpness at `landscape.checkpoint_epochs`.

At each listed epoch the callback hands the model being trained (the running weights) to `measure`, the
pipeline's one trajectory-point function (same budget and probe subset as the final point), logs the top
eigenvalue and trace under `<prefix>sharpness/…` and keeps the trajectory in its state, which Lightning saves in
every checkpoint (so a resumed run keeps earlier points). `measure` must leave the model, RNG and mode untouched,
so training is bit-identical with or without the callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
from torch import nn


class SharpnessTrajectory(pl.Callback):
    """Record `measure(model, epoch)` after each epoch in `epochs` (1-based, counting finished epochs)."""

    def __init__(self, measure: Callable[[nn.Module, int], dict[str, Any]], epochs: Iterable[int], *, prefix: str = ""):
        self.measure, self.epochs, self.prefix = measure, sorted(set(int(e) for e in epochs)), prefix
        self.trajectory: list[dict[str, Any]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if trainer.sanity_checking or epoch not in self.epochs or any(p["epoch"] == epoch for p in self.trajectory):
            return
        if getattr(pl_module, "diverged", False):  # a non-finite epoch: the cell records the endpoint as diverged
            return
        point = self.measure(pl_module.model, epoch)
        self.trajectory.append(point)
        for key in ("hessian_top_eig", "hessian_trace"):
            pl_module.log(f"{self.prefix}sharpness/{key}", point[key], on_step=False, on_epoch=True, batch_size=1)

    def state_dict(self) -> dict[str, Any]:
        return {"trajectory": list(self.trajectory)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trajectory = list(state_dict.get("trajectory", []))

"""The in-training half of the landscape analysis: sharpness at `landscape.checkpoint_epochs`.

At each listed epoch the callback measures the top Hessian eigenvalue, the Hessian trace and the loss on a
fixed analysis subset of the training data (eval mode; the caller's model, RNG and mode are left untouched,
so training is bit-identical with or without it), logs them under `<prefix>sharpness/…` and keeps the
trajectory in its state, which Lightning saves in every checkpoint (so a resumed run keeps earlier points).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
from torch import nn

from landscape_sweep.landscape import evaluate, hessian_eigenvalues, hessian_trace
from landscape_sweep.landscape._core import Data, preserved


def trajectory_point(
    model: nn.Module, data: Data, *, tol: float, max_iter: int, trace_probes: int, seed: int
) -> dict[str, float]:
    """Cheap per-checkpoint measurement: top Hessian eigenvalue, trace and loss/accuracy on `data`."""
    top = hessian_eigenvalues(model, data, k=1, tol=tol, max_iter=max_iter, seed=seed)[0]
    trace, _ = hessian_trace(model, data, num_probes=max(2, trace_probes), seed=seed)
    with preserved(model, "eval"):
        loss, acc = evaluate(model, data)
    return {"hessian_top_eig": top, "hessian_trace": trace, "train_loss": loss, "train_acc": acc}


class SharpnessTrajectory(pl.Callback):
    def __init__(
        self,
        data: Data,
        epochs: Iterable[int],
        *,
        prefix: str = "",
        tol: float = 1e-3,
        max_iter: int = 30,
        trace_probes: int = 10,
        seed: int = 0,
    ):
        self.data, self.epochs, self.prefix = data, sorted(set(int(e) for e in epochs)), prefix
        self.kw = {"tol": tol, "max_iter": max_iter, "trace_probes": trace_probes, "seed": seed}
        self.trajectory: list[dict[str, Any]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if trainer.sanity_checking or epoch not in self.epochs or any(p["epoch"] == epoch for p in self.trajectory):
            return
        point = {"epoch": epoch, **trajectory_point(pl_module.model, self.data, **self.kw)}
        self.trajectory.append(point)
        for key in ("hessian_top_eig", "hessian_trace"):
            pl_module.log(f"{self.prefix}sharpness/{key}", point[key], on_step=False, on_epoch=True)

    def state_dict(self) -> dict[str, Any]:
        return {"trajectory": list(self.trajectory)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trajectory = list(state_dict.get("trajectory", []))

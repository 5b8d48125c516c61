"""LitClassifier: one LightningModule for every optimizer (SGD/Adam/AdamW, SAM/ASAM, SWA on any of them).

Manual optimization everywhere, one code path: the loss is computed in a closure and
`opt.step(closure=closure)` runs it once (plain) or twice (SAM), so `trainer.global_step` counts
optimizer steps (one per batch). The module steps its per-step LR schedule itself. A non-finite loss
skips the step, sets `diverged` and stops the trainer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from landscape_sweep.training.optim import (
    build_optimizer,
    build_scheduler,
    resolve_cfg,
    swa_start_epoch,
    validate_optimizer_cfg,
)
from landscape_sweep.training.sam import frozen_bn_stats
from landscape_sweep.training.swa import SWA


class _NonFiniteLoss(Exception):
    """Raised inside the closure before backward so the optimizer never steps on a NaN/inf loss."""


def _cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(logits, y)


class LitClassifier(pl.LightningModule):
    """Train `model` (a classifier returning logits) with the optimizer config `optim_cfg`.

    Logs `{log_prefix}train/loss|acc` (epoch means), `{log_prefix}val/...`, `{log_prefix}test/...`
    and `{log_prefix}lr` (per step). After `fit`, `self.model` holds the final weights: the SWA
    average (with recomputed BN statistics) when SWA is on.
    """

    def __init__(
        self,
        model: nn.Module,
        optim_cfg: Mapping[str, Any],
        *,
        max_epochs: int,
        steps_per_epoch: int,
        log_prefix: str = "",
        loss_fn: Callable[[Tensor, Tensor], Tensor] = _cross_entropy,
    ) -> None:
        super().__init__()
        validate_optimizer_cfg(optim_cfg, max_epochs=max_epochs)
        if not (isinstance(steps_per_epoch, int) and steps_per_epoch >= 1):
            raise ValueError(f"steps_per_epoch={steps_per_epoch!r}: must be an integer >= 1")
        self.model = model
        self.optim_cfg = resolve_cfg(optim_cfg)
        self.max_epochs, self.steps_per_epoch, self.log_prefix = max_epochs, steps_per_epoch, log_prefix
        self.loss_fn = loss_fn
        self.automatic_optimization = False
        self.diverged = False
        self.swa = (
            SWA(self.optim_cfg, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch)
            if swa_start_epoch(self.optim_cfg, max_epochs=max_epochs) is not None
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def setup(self, stage: str) -> None:
        rho = self.optim_cfg["rho"]
        if rho is not None and getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            raise ValueError(
                f"optimizer.rho={rho}: SAM/ASAM cannot run with trainer precision={self.trainer.precision} "
                "(fp16 GradScaler steps without a closure); use bf16-mixed or 32"
            )

    def configure_optimizers(self) -> dict[str, Any]:
        opt = build_optimizer(self.model.parameters(), self.optim_cfg)
        sched = build_scheduler(opt, self.optim_cfg, max_epochs=self.max_epochs, steps_per_epoch=self.steps_per_epoch)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- training -----------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        if self.swa is not None and self.swa.active(self.current_epoch):
            self.swa.begin(self.model, self.optimizers(use_pl_optimizer=False))

    def _metrics(self, logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        loss = self.loss_fn(logits, y)
        return loss, (logits.argmax(-1) == y).float().mean()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        opt = self.optimizers()
        clip = self.optim_cfg["grad_clip"]
        first: dict[str, Tensor] = {}

        def closure() -> Tensor:
            again = bool(first)  # SAM's second evaluation at w + e: BN running stats stay untouched
            opt.zero_grad(set_to_none=True)
            with frozen_bn_stats(self.model) if again else contextlib.nullcontext():
                loss, acc = self._metrics(self.model(x), y)
            if not torch.isfinite(loss):
                raise _NonFiniteLoss
            if not again:
                first.update(loss=loss.detach(), acc=acc.detach())
            self.manual_backward(loss)
            if clip is not None:
                self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
            return loss

        lr = opt.param_groups[0]["lr"]
        try:
            opt.step(closure=closure)
        except _NonFiniteLoss:
            self.diverged = True
            self.trainer.should_stop = True
            return None
        in_swa = self.swa is not None and self.swa.active(self.current_epoch)
        sched = self.swa.scheduler if in_swa else self.lr_schedulers()
        sched.step()
        if in_swa and self.trainer.is_last_batch:
            self.swa.update(self.model)

        p, n = self.log_prefix, y.shape[0]
        self.log(f"{p}train/loss", first["loss"], on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{p}train/acc", first["acc"], on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{p}lr", float(lr), on_step=True, on_epoch=False, batch_size=n)
        return None

    def on_train_end(self) -> None:
        if self.swa is not None and not self.diverged:
            self.swa.finalize(self.model, self.trainer.train_dataloader, device=self.device)

    # --- evaluation ---------------------------------------------------------------------------------
    def _eval_step(self, batch: tuple[Tensor, Tensor], split: str) -> None:
        x, y = batch
        loss, acc = self._metrics(self.model(x), y)
        p, n = self.log_prefix, y.shape[0]
        self.log(f"{p}{split}/loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{p}{split}/acc", acc, on_step=False, on_epoch=True, batch_size=n)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    # --- checkpoints --------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["diverged"] = self.diverged
        if self.swa is not None:
            checkpoint["swa"] = self.swa.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.diverged = bool(checkpoint.get("diverged", False))
        if self.swa is not None and "swa" in checkpoint:
            self.swa.load_state_dict(checkpoint["swa"])

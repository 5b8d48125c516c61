"""LitClassifier: one LightningModule for every optimizer (SGD/Adam/AdamW, SAM/ASAM, SWA on any of them).

Manual optimization everywhere, one code path: the loss is computed in a closure that the raw optimizer's
`step(closure)` runs once (plain) or twice (SAM); `trainer.global_step` counts optimizer steps (one per
minibatch). The module steps its per-step LR schedule itself. Per-step cost is kept at the compute's: a
cell trains on an `EpochAsBatch` loader (one Lightning batch per epoch, one optimizer step per minibatch),
the epoch's training loss and accuracy are summed on the device and logged once per epoch (no per-step
`log` calls or host syncs). A non-finite epoch loss (checked once per Lightning batch: per epoch in a
cell) sets `diverged` and stops the trainer; the cell then records the endpoint as diverged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
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


def _cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(logits, y)


class Batches:
    """The minibatches of one epoch, handed to `training_step` as one Lightning batch (see `EpochAsBatch`)."""

    def __init__(self, loader: Iterable[tuple[Tensor, Tensor]]) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(self.loader)


class EpochAsBatch:
    """A training loader that gives Lightning each epoch as one batch (a `Batches`); the module still takes one
    optimizer step per minibatch.

    Lightning's per-batch machinery (hooks of every callback, progress, result collection, device transfer) costs
    ~1 ms a batch: 2-4x the compute of a small model's step. With in-memory data (a `TensorLoader` whose tensors
    already live on the training device) it then runs once per epoch. Lightning selects the epoch through
    `.sampler.set_epoch`, as for the wrapped loader.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.sampler = loader.sampler
        self.batch_sampler = None

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[Batches]:
        yield Batches(self.loader)


def minibatches(loader: Any) -> Any:
    """The loader of minibatches behind a training loader (`EpochAsBatch` or a plain one)."""
    return loader.loader if isinstance(loader, EpochAsBatch) else loader


class LitClassifier(pl.LightningModule):
    """Train `model` (a classifier returning logits) with the optimizer config `optim_cfg`.

    Logs `{log_prefix}train/loss|acc` (epoch means), `{log_prefix}val/...`, `{log_prefix}test/...`
    and `{log_prefix}lr` (the epoch's last step). After `fit`, `self.model` holds the final weights: the SWA
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
        self._scaled = getattr(self.trainer.precision_plugin, "scaler", None) is not None  # fp16 GradScaler
        if rho is not None and self._scaled:
            raise ValueError(
                f"optimizer.rho={rho}: SAM/ASAM cannot run with trainer precision={self.trainer.precision} "
                "(fp16 GradScaler steps without a closure); use bf16-mixed or 32"
            )

    def configure_optimizers(self) -> dict[str, Any]:
        opt = build_optimizer(self.model.parameters(), self.optim_cfg)
        sched = build_scheduler(opt, self.optim_cfg, max_epochs=self.max_epochs, steps_per_epoch=self.steps_per_epoch)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- training -----------------------------------------------------------------------------------
    def _metrics(self, logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        loss = self.loss_fn(logits, y)
        return loss, (logits.argmax(-1) == y).float().mean()

    def training_step(self, batch: tuple[Tensor, Tensor] | Batches, batch_idx: int) -> None:
        opt = self.optimizers()
        in_swa = self.swa is not None and self.swa.active(self.current_epoch)
        sched = self.swa.scheduler if in_swa else self.lr_schedulers()
        lr = 0.0
        for x, y in batch if isinstance(batch, Batches) else (batch,):
            lr = opt.param_groups[0]["lr"]
            loss, correct = self._step(opt, x, y)
            sched.step()
            self._accumulate(loss, correct, y.shape[0])
        if not self.trainer.is_last_batch:
            return None
        if in_swa:
            self.swa.update(self.model)
        self._end_epoch(lr)
        return None

    def _step(self, opt: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step on (x, y); returns the loss and the number of correct predictions at w (detached)."""
        clip, raw = self.optim_cfg["grad_clip"], opt.optimizer
        first: list[tuple[Tensor, Tensor]] = []

        def closure() -> Tensor:
            again = bool(first)  # SAM's second evaluation at w + e: BN running stats stay untouched
            raw.zero_grad(set_to_none=True)
            with frozen_bn_stats(self.model) if again else contextlib.nullcontext():
                logits = self.model(x)
                loss = self.loss_fn(logits, y)
            if not again:
                first.append((loss.detach(), (logits.detach().argmax(-1) == y).sum()))
            if self._scaled:
                self.manual_backward(loss)  # the GradScaler scales the loss
            else:
                loss.backward()  # manual_backward adds only callback hooks here, ~0.1 ms a step
            if clip is not None:
                self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
            return loss

        if self._scaled:
            opt.step(closure=closure)  # the precision plugin unscales, and skips steps with inf gradients
        else:  # the raw optimizer steps; Lightning's hooks around it keep counting optimizer steps (global_step)
            opt._on_before_step()
            raw.step(closure=closure)  # SAM evaluates the closure twice, any other optimizer once
            opt._on_after_step()
        return first[0]

    def on_train_epoch_start(self) -> None:
        self._sums, self._count = [], 0
        if self.swa is not None and self.swa.active(self.current_epoch):
            self.swa.begin(self.model, self.optimizers(use_pl_optimizer=False))

    def _accumulate(self, loss: Tensor, correct: Tensor, n: int) -> None:
        """Keep the step's loss and correct predictions (device tensors, no host sync); summed at the epoch's end."""
        self._sums.append((loss, correct, n))
        self._count += n

    def _end_epoch(self, lr: float) -> None:
        """Log the epoch's mean training loss/accuracy and its last step's lr once (each Lightning `log` call costs
        about a millisecond); a non-finite mean loss (one sync per epoch) marks the run diverged and stops it."""
        if not self._sums:
            return
        losses, corrects, sizes = zip(*self._sums)
        weights = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device)
        loss = (torch.stack(losses).float() * weights).sum() / self._count
        acc, p = torch.stack(corrects).sum().float() / self._count, self.log_prefix
        self._sums = []
        if not torch.isfinite(loss):
            self.diverged = True
            self.trainer.should_stop = True
            return
        # batch_size given: Lightning would otherwise find it by iterating the batch (the whole epoch's data)
        n = self._count
        self.log_dict({f"{p}train/loss": loss, f"{p}train/acc": acc}, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{p}lr", float(lr), on_step=False, on_epoch=True, batch_size=n)

    def on_train_end(self) -> None:
        if self.swa is not None and not self.diverged:
            self.swa.finalize(self.model, minibatches(self.trainer.train_dataloader), device=self.device)

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

"""Stochastic weight averaging (Izmailov et al. 2018) over torch.optim.swa_utils, driven by LitClassifier.

Timeline (epochs are 0-based, `start` from `swa_start_epoch`):
- from the first step of epoch `start`, SWALR replaces the base schedule: it anneals from the LR the
  base schedule had reached to `swa.lr` over `swa.anneal_epochs` epochs (stepped per optimizer step);
- after the last batch of epoch `start` and of every later epoch, the running weights join the
  equal-weight average (before validation, so epoch-end checkpoints hold that epoch's snapshot);
- at the end of fit the averaged weights replace the model's and BN statistics are recomputed with
  one pass over the training data (cumulative average, as `update_bn`).
Works with manual optimization, hence with SAM (Lightning's StochasticWeightAveraging callback does not).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from landscape_sweep.training.optim import resolve_cfg, swa_start_epoch


class SWA:
    """Averaged weights, their counter and the SWA LR scheduler; all of it in `state_dict()`."""

    def __init__(self, optim_cfg: Mapping[str, Any], *, max_epochs: int, steps_per_epoch: int) -> None:
        start = swa_start_epoch(optim_cfg, max_epochs=max_epochs)
        if start is None:
            raise ValueError("optimizer.swa.enabled=False: SWA wiring needs swa.enabled=true")
        cfg = resolve_cfg(optim_cfg)["swa"]
        self.start = start
        self.swa_lr = float(cfg["lr"])
        self.anneal_steps = int(cfg["anneal_epochs"]) * steps_per_epoch
        self.anneal_strategy = cfg["anneal_strategy"]
        self.average: AveragedModel | None = None
        self.scheduler: SWALR | None = None
        self._pending: dict[str, Any] | None = None

    def active(self, epoch: int) -> bool:
        return epoch >= self.start

    @property
    def n_averaged(self) -> int:
        return 0 if self.average is None else int(self.average.n_averaged)

    def begin(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Enter the SWA phase (idempotent): SWALR takes the LR over, the average is created or restored."""
        if self.scheduler is not None:
            return
        self.scheduler = SWALR(
            optimizer, swa_lr=self.swa_lr, anneal_epochs=self.anneal_steps, anneal_strategy=self.anneal_strategy
        )
        self.average = AveragedModel(model, use_buffers=False)
        self.average.requires_grad_(False)
        if self._pending is not None:
            self.scheduler.load_state_dict(self._pending["scheduler"])
            self.average.load_state_dict(self._pending["average"])
            self._pending = None

    def update(self, model: nn.Module) -> None:
        """Add the current weights to the equal-weight average."""
        assert self.average is not None, "SWA.update before SWA.begin"
        self.average.update_parameters(model)

    @torch.no_grad()
    def finalize(self, model: nn.Module, train_data: Iterable[Any], device: torch.device | None = None) -> bool:
        """Copy the average into `model` and recompute its BN statistics; False (no-op) if nothing was averaged."""
        if self.n_averaged == 0:
            return False
        assert self.average is not None
        for p, p_avg in zip(model.parameters(), self.average.module.parameters()):
            p.copy_(p_avg)
        update_bn(train_data, model, device=device)
        return True

    def state_dict(self) -> dict[str, Any]:
        if self.scheduler is None or self.average is None:
            return dict(self._pending) if self._pending is not None else {"average": None, "scheduler": None}
        return {"average": self.average.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore on the next `begin` (the optimizer and the model must exist and be restored first)."""
        self.average, self.scheduler = None, None
        self._pending = None if state.get("average") is None else dict(state)

"""Hydra callbacks: build the sweep report when a multirun ends (on the submitting side for SLURM too)."""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from landscape_sweep.report import build_report

        sweep_dir = str(config.hydra.sweep.dir)
        try:
            paths = build_report(sweep_dir, wandb=bool(OmegaConf.select(config, "report.wandb", default=False)))
        except Exception as e:  # a report problem must not hide the sweep's own results
            log.error("sweep report failed for %s: %s", sweep_dir, e)
            return
        for name, p in paths.items():
            log.info("sweep %s: %s", name, p)

"""Hydra callbacks: a progress line per finished cell, and the sweep report when a multirun ends (on the
submitting side for SLURM too)."""

from __future__ import annotations

import logging
import time
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


class SweepProgress(Callback):
    """`[k/N] status  cell  measures  (time; ETA …)` on stdout when a cell of a multirun finishes
    (`pipeline/progress.py`). Printing never fails a job: a problem is logged and the sweep goes on."""

    def __init__(self) -> None:
        self._job_start = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from landscape_sweep.pipeline import progress

        try:
            params = OmegaConf.select(config, "hydra.sweeper.params")
            params = OmegaConf.to_container(params, resolve=True) if params is not None else {}
            total = None
            if str(OmegaConf.select(config, "hydra.sweeper._target_")).endswith("BasicSweeper"):
                total = progress.sweep_size(params, list(config.hydra.overrides.task))
            progress.start(config.hydra.sweep.dir, total)
        except Exception as e:
            log.warning("sweep progress unavailable: %s", e)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_start = time.time()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _multirun(config):
            return
        from landscape_sweep.pipeline import progress

        try:
            line = progress.finished_line(
                config.hydra.sweep.dir,
                config.hydra.runtime.output_dir,
                time.time() - self._job_start,
                list(job_return.overrides or []),
            )
        except Exception as e:
            log.warning("sweep progress line failed: %s", e)
            return
        print(line, flush=True)


class SweepReport(SweepProgress):
    """The progress lines of `SweepProgress`, and at multirun end the sweep report (`report.build_report`)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from landscape_sweep.report import build_report

        sweep_dir = str(config.hydra.sweep.dir)
        try:
            node = OmegaConf.to_container(OmegaConf.select(config, "report", default={}) or {}, resolve=True)
            paths = build_report(sweep_dir, wandb=bool(node.get("wandb", False)), options=node)
        except Exception as e:  # a report problem must not hide the sweep's own results
            log.error("sweep report failed for %s: %s", sweep_dir, e)
            return
        for name, p in paths.items():
            log.info("sweep %s: %s", name, p)

"""Hydra callbacks: a progress line per finished cell, and the sweep report when a multirun ends (on the
submitting side for SLURM too)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from landscape_sweep import manifest
from landscape_sweep.pipeline import progress

log = logging.getLogger(__name__)


def _multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


class SweepProgress(Callback):
    """`[k/N] status  cell  measures  (time; ETA …)` on stdout when a cell of a multirun finishes
    (`pipeline/progress.py`). Printing never fails a job: a problem is logged and the sweep goes on."""

    def __init__(self) -> None:
        self._job_start = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            params = OmegaConf.select(config, "hydra.sweeper.params")
            params = OmegaConf.to_container(params, resolve=True) if params is not None else {}
            total = None
            if str(OmegaConf.select(config, "hydra.sweeper._target_")).endswith("BasicSweeper"):
                total = progress.sweep_size(params, list(config.hydra.overrides.task))
            progress.start(config.hydra.sweep.dir, total)
        except Exception as e:
            log.warning("sweep progress unavailable: %s", e)
        try:
            _start_manifest(config)
        except Exception as e:  # the sweep runs on; only `python -m landscape_sweep.status` loses the cell list
            log.warning("sweep manifest not written: %s", e)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_start = time.time()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _multirun(config):
            return
        failure, status = None, None
        value = getattr(job_return, "_return_value", None)  # the public `return_value` re-raises a failure
        if job_return.status == JobStatus.FAILED:  # the job raised (a refused cell): its results.json is not its own
            failure = (getattr(value, "status", "failed"), " ".join(str(value).split()))
        elif isinstance(value, str):  # the cell's status (`app.hydra_main`): `locked` cells were skipped
            status = value
        try:
            line = progress.finished_line(
                config.hydra.sweep.dir,
                config.hydra.runtime.output_dir,
                time.time() - self._job_start,
                list(job_return.overrides or []),
                failure,
                status,
            )
        except Exception as e:
            log.warning("sweep progress line failed: %s", e)
            return
        print(line, flush=True)


def _detached(config: DictConfig) -> bool:
    return bool(OmegaConf.select(config, "hydra.launcher.detach", default=False))


def _start_manifest(config: DictConfig) -> None:
    """`<sweep_dir>/sweep.json` (`landscape_sweep.manifest`): the command and, for a basic-sweeper grid, every
    cell's overrides, so `status` and `resubmit` know the sweep's cells before (and after) their jobs run."""
    params = OmegaConf.select(config, "hydra.sweeper.params")
    params = OmegaConf.to_container(params, resolve=True) if params is not None else {}
    cells = None
    if str(OmegaConf.select(config, "hydra.sweeper._target_")).endswith("BasicSweeper"):
        cells = progress.sweep_cells(params, list(config.hydra.overrides.task))
    subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
    if cells is None or subdir != "${hydra.job.num}":  # job dirs not <sweep_dir>/<num>: status reads the dirs
        cells = []
    manifest.start_sweep(
        str(config.hydra.sweep.dir),
        cells,
        argv=sys.argv[1:],
        cwd=str(config.hydra.runtime.cwd),
        python=sys.executable,
        launcher=str(OmegaConf.select(config, "hydra.launcher._target_", default="")),
        detach=_detached(config),
    )


class SweepReport(SweepProgress):
    """The progress lines of `SweepProgress`, and at multirun end the sweep report (`report.build_report`); a
    detached SLURM sweep (`hydra.launcher.detach=true`) leaves the report to its report job on the cluster."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from landscape_sweep.report import build_report  # deferred: pandas and matplotlib, at the sweep's end only

        sweep_dir = str(config.hydra.sweep.dir)
        if _detached(config):
            log.info("detached sweep %s: its report job writes the report when the cells end", sweep_dir)
            return
        try:
            node = OmegaConf.to_container(OmegaConf.select(config, "report", default={}) or {}, resolve=True)
            paths = build_report(sweep_dir, wandb=bool(node.get("wandb", False)), options=node)
        except Exception as e:  # a report problem must not hide the sweep's own results
            log.error("sweep report failed for %s: %s", sweep_dir, e)
            return
        for name, p in paths.items():
            log.info("sweep %s: %s", name, p)

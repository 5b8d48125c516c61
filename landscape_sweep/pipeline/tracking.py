"""Experiment tracking for one cell: one W&B run (offline by default) or Lightning CSV logs, or nothing.

The W&B run lives in `<job_dir>/wandb/`; `wandb.finish()` always runs (see `Tracker.close`). Per-endpoint
metrics carry a `seed<k>/` prefix so all endpoints of a cell share one run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger


class Tracker:
    """Owns the cell's W&B run (if any) and hands Lightning a logger for each endpoint."""

    def __init__(self, cfg: dict[str, Any], job_dir: Path, *, group: str, job_type: str, name: str):
        self.kind = cfg["logger"]["name"]
        self.job_dir = job_dir
        self.run = None
        if self.kind == "wandb":
            import wandb

            w = cfg["logger"]["wandb"]
            mode = os.environ.get("WANDB_MODE") or w.get("mode") or "offline"
            self.run = wandb.init(
                project=w.get("project"),
                entity=w.get("entity"),
                group=w.get("group") or group,
                job_type=w.get("job_type") or job_type,
                tags=[str(t) for t in (w.get("tags") or [])],
                name=name,
                config=cfg,
                dir=str(job_dir),
                mode=mode,
                reinit="create_new",
                settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
            )

    def lightning_logger(self, seed: int) -> Logger | bool:
        """The Lightning logger of one endpoint (False: none)."""
        if self.kind == "wandb":
            return WandbLogger(experiment=self.run)
        if self.kind == "csv":
            return CSVLogger(save_dir=str(self.job_dir), name="csv", version=f"seed{seed}")
        return False

    def log(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(metrics)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def log_cell(self, result: dict[str, Any], files: dict[str, Path]) -> None:
        """The cell's landscape summaries, path tables, plots and PNGs (W&B only; CSV/none keep the files)."""
        if self.run is not None:
            from landscape_sweep.pipeline.artifacts import log_cell_to_wandb

            log_cell_to_wandb(self.run, result, files)

    def close(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None

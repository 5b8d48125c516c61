"""Running the real CLI: the repo root, fast overrides, its environment, and checks of what a cell wrote."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# a few seconds per cell on 2 CPU cores
FAST = [
    "trainer.max_epochs=2",
    "data.train_size=512",
    "model.width=16",
    "endpoints.seeds=[0,1]",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "landscape=fast",
]

CONTRACT = {
    "schema",
    "status",
    "error",
    "config_hash",
    "config",
    "cell",
    "endpoints",
    "connectivity",
    "timing_s",
    "versions",
}
CELL = {"dataset", "arch", "depth", "width", "optimizer", "num_params", "train_size"}
ENDPOINT = {"seed", "checkpoint", "train_loss", "train_acc", "test_loss", "test_acc", "sharpness", "trajectory"}


def cli_env(root: Path) -> dict[str, str]:
    """The environment of a CLI run with outputs under `root`: offline W&B, short errors, no SLURM job."""
    env = dict(os.environ)
    env.update(
        LANDSCAPE_SWEEP_ROOT=str(root),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        HYDRA_FULL_ERROR="0",
        PYTHONUNBUFFERED="1",
    )
    env.pop("SLURM_JOB_ID", None)
    return env


def only(paths) -> Path:
    """The single path in `paths` (asserts there is exactly one)."""
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


def check_completed(job_dir: Path) -> dict:
    """The job's results.json, asserted completed and holding the results contract with finite metrics."""
    results = json.loads((job_dir / "results.json").read_text())
    assert results["status"] == "completed", results.get("error")
    assert set(results) >= CONTRACT and set(results["cell"]) >= CELL and results["error"] is None
    for endpoint in results["endpoints"]:
        assert set(endpoint) >= ENDPOINT
        assert all(math.isfinite(endpoint[k]) for k in ("train_loss", "train_acc", "test_loss", "test_acc"))
        assert (job_dir / endpoint["checkpoint"]).is_file()
    return results

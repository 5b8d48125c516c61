"""Where a cell's wall time goes: `timing_s` of results.json beside `train`, `analysis` and `total`.

- `startup`: process start to the cell's start (interpreter, imports, Hydra): paid by the first cell of a
  process only, 0 for the cells after it (an in-process sweep or a packed job pays it once);
- `data`: loading the data and the analysis subsets;
- `first_step`: process start (first cell) or cell start (later cells) to the first training step;
- `wandb`: what the cell waited for its W&B run's start, which runs in a background thread while the cell loads its
  data (`tracking.Tracker`; 0 without W&B). Logging the cell's payload and finishing the run come after
  results.json is written: `benchmarks/cell_startup.py` times them from outside.
"""

from __future__ import annotations

import os
import time

import pytorch_lightning as pl

_state: dict[str, float | bool | None] = {"first_step": None, "startup_paid": False}


def process_age_s() -> float:
    """Seconds since this process started (Linux: /proc; elsewhere 0)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def cell_started() -> float:
    """Start the clock of a cell; returns its `startup` seconds (0 after the process's first cell)."""
    _state["first_step"] = None
    startup = 0.0 if _state["startup_paid"] else process_age_s()
    _state["startup_paid"] = True
    return startup


def first_step_at() -> float | None:
    """`time.perf_counter()` of the cell's first training step, None before it."""
    return _state["first_step"]  # type: ignore[return-value]


class FirstStep(pl.Callback):
    """Note the time of the cell's first training step."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, i: int) -> None:
        if _state["first_step"] is None:
            _state["first_step"] = time.perf_counter()

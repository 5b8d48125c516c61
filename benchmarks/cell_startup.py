"""Where one default cell's wall time goes: `python -m landscape_sweep` (mnist1d MLP 2x64, 3 endpoints, default
landscape preset) run as a user runs it, with the default W&B logger (offline) and with `logger=none`.

Prints the medians over the repeats of the process's wall time and of the cell's `timing_s` (results.json):
startup (interpreter, imports, Hydra), data, first training step, training, analysis; W&B's whole cost as the
difference of the two loggers' wall times; and the import costs alone (torch, Lightning with what it imports,
this package), each in a fresh interpreter, plus which heavy optional packages a `logger=none` cell imports.

    python benchmarks/cell_startup.py [--repeats 3] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("startup", "data", "first_step", "train", "analysis", "total")
HEAVY = ("wandb", "pandas", "matplotlib", "scipy", "torchvision", "sklearn")


def run_cell(out: Path, logger: str, epochs: int) -> tuple[float, dict]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    args = [f"hydra.run.dir={out}", f"logger={logger}", f"trainer.max_epochs={epochs}"]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "landscape_sweep", *args], cwd=out.parent, env=env,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    result = json.loads((out / "results.json").read_text())
    assert result["status"] == "completed", result["error"]
    return wall, result["timing_s"]


def import_seconds(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def loaded_by_a_cell() -> list[str]:
    """The heavy optional packages in sys.modules after a `logger=none` cell ran in this interpreter."""
    code = (
        "import sys, tempfile\n"
        "from hydra import compose, initialize_config_dir\n"
        "from omegaconf import OmegaConf\n"
        "from landscape_sweep import CONF_DIR\n"
        "from landscape_sweep.pipeline.cell import run_cell\n"
        "with initialize_config_dir(str(CONF_DIR), version_base=None):\n"
        "    cfg = compose('config', overrides=['logger=none', 'trainer.max_epochs=1', 'landscape=fast'])\n"
        "cfg = OmegaConf.to_container(cfg, resolve=False); cfg.pop('hydra', None)\n"
        "d = tempfile.mkdtemp(); cfg['paths'] = {'output_dir': d, 'log_dir': d}; cfg['data']['root'] = d\n"
        "assert run_cell(cfg, d).status == 'completed'\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return out.stdout.split()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="landscape_sweep_startup-"))
    runs: dict[str, list[tuple[float, dict]]] = {"wandb": [], "none": []}
    for i in range(args.repeats):
        for logger in runs:
            runs[logger].append(run_cell(root / f"{logger}{i}", logger, args.epochs))
    print(f"default cell ({args.epochs} epochs), median of {args.repeats}; seconds")
    print(f"{'':<22}{'logger=wandb':>14}{'logger=none':>14}")
    walls = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    print(f"{'process wall':<22}{walls['wandb']:>14.2f}{walls['none']:>14.2f}")
    for field in FIELDS:
        vals = {k: statistics.median(t.get(field) or 0.0 for _, t in v) for k, v in runs.items()}
        print(f"{'  ' + field:<22}{vals['wandb']:>14.2f}{vals['none']:>14.2f}")
    print(f"{'W&B (init+log+finish)':<22}{walls['wandb'] - walls['none']:>14.2f}")
    imports = {
        "torch": "import torch",
        "pytorch_lightning": "import torch; t = time.perf_counter(); import pytorch_lightning",
        "landscape_sweep": "import pytorch_lightning; t = time.perf_counter(); import landscape_sweep.pipeline.app, "
        "landscape_sweep.pipeline.cell",
    }
    print("imports, each after the ones above (fresh interpreter, median of 3):")
    for name, stmt in imports.items():
        print(f"  {name:<20}{statistics.median(import_seconds(stmt) for _ in range(3)):>14.2f}")
    print("heavy optional packages a logger=none cell imports:", ", ".join(loaded_by_a_cell()) or "none")


if __name__ == "__main__":
    main()

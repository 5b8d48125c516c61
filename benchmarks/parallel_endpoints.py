"""Time training a cell's K endpoints with `endpoints.parallel` = none | processes | vmap.

For the mini-study's MLP sizes (conf/experiment/mini_study.yaml: mnist1d, depth 1,2,4 x width 16,64,256, SGD,
3 endpoints) the training part of the real cell path (`parallel.train_endpoints`: Lightning for none/processes,
the vmap ensemble, writing final.pt/final.json, no analysis) is timed `--repeats` times per mode (median
reported, after one untimed warm-up run per mode) in a fresh job dir each time, `none` with all of this
process's threads:

    .venv/bin/python benchmarks/parallel_endpoints.py [--epochs 30] [--repeats 3] [--depths 1 2 4] [--widths ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from landscape_sweep.pipeline import cell, endpoint, measures
from landscape_sweep.pipeline.config import CONF_DIR, validate
from landscape_sweep.pipeline.parallel import train_endpoints
from landscape_sweep.pipeline.tracking import Tracker

MODES = ("none", "processes", "vmap")


def config(depth: int, width: int, epochs: int, mode: str, data_dir: str) -> dict:
    overrides = [
        "experiment=mini_study", f"model.depth={depth}", f"model.width={width}", "optimizer=sgd",
        f"trainer.max_epochs={epochs}", "landscape.checkpoint_epochs=[]", "logger=none",
        "trainer.enable_progress_bar=false", f"endpoints.parallel={mode}", f"paths.data_dir={data_dir}",
    ]  # fmt: skip
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="bench"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return validate(cfg)


def time_training(cfg: dict, root: Path) -> float:
    """Seconds to train every endpoint of the cell from scratch (data loaded before the clock starts)."""
    data = cell.load_cell_data(cfg).to(endpoint.training_device(cfg))
    ad = measures.analysis_data(cfg, data)
    job = Path(tempfile.mkdtemp(dir=root))
    tracker = Tracker(cfg, job, group="bench", job_type="bench", name=job.name)
    t0 = time.perf_counter()
    train_endpoints(cfg, data, job, tracker, ad)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    args = ap.parse_args()
    endpoint.quiet_lightning()
    root = Path(tempfile.mkdtemp(prefix="bench_parallel_"))
    print(f"torch threads {torch.get_num_threads()}, {args.epochs} epochs, 3 endpoints, median of {args.repeats}")
    print(f"{'depth':>5} {'width':>5} " + " ".join(f"{m:>10}" for m in MODES) + "   processes/none  vmap/none")
    totals = dict.fromkeys(MODES, 0.0)
    for mode in MODES:  # warm-up: first-call costs (imports, kernels, Lightning's first Trainer) are not timed
        time_training(config(1, 16, 1, mode, str(root / "data")), root)
    for depth in args.depths:
        for width in args.widths:
            med = {}
            for mode in MODES:
                cfg = config(depth, width, args.epochs, mode, str(root / "data"))
                med[mode] = statistics.median(time_training(cfg, root) for _ in range(args.repeats))
                totals[mode] += med[mode]
            ratios = f"{med['processes'] / med['none']:>14.2f} {med['vmap'] / med['none']:>10.2f}"
            print(f"{depth:>5} {width:>5} " + " ".join(f"{med[m]:>9.2f}s" for m in MODES) + f"   {ratios}", flush=True)
    print(
        "total       " + " ".join(f"{totals[m]:>9.2f}s" for m in MODES)
        + f"   {totals['processes'] / totals['none']:>14.2f} {totals['vmap'] / totals['none']:>10.2f}"
    )  # fmt: skip


if __name__ == "__main__":
    main()

"""Training overhead of the framework on the path a user runs: `run_cell` on the default cell (mnist1d MLP 2x64,
30 epochs, its 3 endpoints, the default W&B logger offline, checkpoints, progress lines; the post-hoc analysis
switched off) vs a hand-written PyTorch loop training the same endpoints for the same epochs on the same data with
the same optimizer and schedule, in the same process. Each repeat runs both, alternating; prints the medians and
the ratio (target <= 1.3x) of

- fit: the endpoints' `trainer.fit` (their `train_time_s`) vs the hand loops;
- cell: the whole `run_cell` (data, W&B run, fit, final metrics, results.json) vs data loading + the hand loop;

and, with `--profile`, where the fit's time goes (cProfile, top functions by own time).

    python benchmarks/train_overhead.py [--epochs 30] [--repeats 5] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from landscape_sweep import CONF_DIR
from landscape_sweep.data import TensorLoader
from landscape_sweep.pipeline import cell, endpoint
from landscape_sweep.training.optim import build_optimizer, build_scheduler


def default_cfg(epochs: int, out: Path) -> dict:
    """The default cell's config with the given epochs."""
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=[f"trainer.max_epochs={epochs}"])
    cfg = OmegaConf.to_container(cfg, resolve=False)
    cfg.pop("hydra", None)
    cfg["paths"] = {"output_dir": str(out), "log_dir": str(out)}
    return cfg


def cell_run(cfg: dict, root: Path) -> tuple[float, float]:
    """(fit seconds, whole run_cell seconds) of the real cell path, analysis off."""
    job_dir = Path(tempfile.mkdtemp(dir=root))
    t0 = time.perf_counter()
    result = cell.run_cell(cfg, job_dir)
    total = time.perf_counter() - t0
    assert result.status == "completed", result.error
    return sum(e.train_time_s for e in result.endpoints), total


def hand_run(cfg: dict) -> tuple[float, float, int]:
    """(loop seconds, data + loop seconds, steps) of plain loops, one per endpoint seed: same data, init, batches,
    optimizer, schedule."""
    t0 = time.perf_counter()
    data = cell.load_cell_data(cfg)
    loop, steps, epochs = 0.0, 0, cfg["trainer"]["max_epochs"]
    for seed in cfg["endpoints"]["seeds"]:
        torch.manual_seed(seed)
        model = endpoint.new_model(cfg, data)
        loader = TensorLoader(*data.train, batch_size=cfg["data"]["batch_size"], shuffle=True, seed=seed)
        opt = build_optimizer(model.parameters(), cfg["optimizer"])
        sched = build_scheduler(opt, cfg["optimizer"], max_epochs=epochs, steps_per_epoch=len(loader))
        t1 = time.perf_counter()
        model.train()
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            for x, y in loader:
                logits = model(x)
                loss = torch.nn.functional.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        loop, steps = loop + time.perf_counter() - t1, steps + epochs * len(loader)
    return loop, time.perf_counter() - t0, steps


def no_analysis(cfg, data, models, result, ad):  # noqa: ANN001, ANN201 - same signature as cell.analyse
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads of both runs")
    ap.add_argument("--profile", action="store_true", help="print the fit's top functions by own time")
    args = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    cell.analyse = no_analysis  # training only: the analysis has its own benchmarks
    root = Path(tempfile.mkdtemp(prefix="landscape_sweep_overhead-"))
    cfg = default_cfg(args.epochs, root)
    cfg["data"]["root"] = str(root / "data")
    cfg["trainer"]["threads"] = args.threads  # the same for both runs (auto would follow the machine's load)
    torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, {args.epochs} epochs, {args.repeats} repeats", flush=True)
    with contextlib.redirect_stderr(io.StringIO()):  # the cell's progress lines
        hand_run(cfg), cell_run(default_cfg(1, root) | {"data": cfg["data"]}, root)  # warm-up
        fits, cells, loops, hands = [], [], [], []
        for _ in range(args.repeats):
            fit, whole = cell_run(cfg, root)
            loop, hand, steps = hand_run(cfg)
            fits.append(fit), cells.append(whole), loops.append(loop), hands.append(hand)
    fit, whole, loop, hand = map(statistics.median, (fits, cells, loops, hands))
    print(f"{'median of ' + str(args.repeats):<34}{'seconds':>9}{'ratio':>8}{'ms/step over':>14}")
    print(f"{'hand loop':<34}{loop:>9.3f}{1.0:>8.2f}")
    print(f"{'run_cell fit (trainer.fit)':<34}{fit:>9.3f}{fit / loop:>8.2f}{1e3 * (fit - loop) / steps:>14.3f}")
    print(f"{'data + hand loop':<34}{hand:>9.3f}{1.0:>8.2f}")
    print(f"{'run_cell (analysis off)':<34}{whole:>9.3f}{whole / hand:>8.2f}{1e3 * (whole - hand) / steps:>14.3f}")
    print(f"fit ratios of the repeats: {', '.join(f'{f / r:.2f}' for f, r in zip(fits, loops))}")
    if args.profile:
        prof = cProfile.Profile()
        with contextlib.redirect_stderr(io.StringIO()):
            prof.runcall(cell_run, cfg, root)
        stats = pstats.Stats(prof, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()

"""Benchmark: how much REPAIR (Jordan et al. 2023) lowers the weight-matching barrier of mnist1d MLPs, and its cost.

MLPs without normalisation (depth x width), trained with the mini-study's SGD (lr 0.05, momentum 0.9, weight decay
5e-4, cosine, batch 128) on mnist1d (4000 train / 1000 test) from `--seeds` seeds; for every pair of seeds the
25-point linear, linear_aligned and linear_aligned_repair paths (the pipeline's: statistics on 2000 seeded training
samples). Prints per depth x width the mean train/test loss and error barriers of each method, REPAIR's reduction
of the aligned barrier (mean [min, max] over pairs), the std ratio at t = 0.5 (variance collapse) and the seconds
per pair of the aligned and the repaired path. Endpoints are compared at one training criterion: each trains until its
epoch-mean train loss is <= `--stop-loss` (0.05), at most `--epochs` (60; `--stop-loss 0` trains them all).
Run: `python benchmarks/repair.py [--stop-loss 0.05] [--epochs 60] [--seeds 3]`.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import tempfile
import time

import torch
from torch import nn

from landscape_sweep.data import TensorLoader, load_data
from landscape_sweep.landscape import RepairedPath, align, evaluate_path, linear_path
from landscape_sweep.models import build_model
from landscape_sweep.pipeline.measures import REPAIR_SAMPLES, probe_subset

METHODS = ("linear", "linear_aligned", "linear_aligned_repair")
BARRIERS = ("loss_barrier", "error_barrier", "test_loss_barrier", "test_error_barrier")


def train(data, depth: int, width: int, seed: int, epochs: int, stop_loss: float | None) -> tuple[nn.Module, int]:
    """The trained model and its epochs: `epochs` of cosine SGD, or fewer once an epoch's mean train loss is <=
    `stop_loss` (the pipeline's `trainer.stop_at.train_loss`, Jiang et al. 2020's protocol); the epochs are negative
    when `stop_loss` was set and never reached."""
    x, y = data.train
    torch.manual_seed(seed)
    model = build_model("mlp", data.in_shape, data.num_classes, depth, width, norm="none")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * math.ceil(len(y) / 128))
    g = torch.Generator().manual_seed(seed)
    done = 0
    while done < epochs:
        total, done = 0.0, done + 1
        for idx in torch.randperm(len(y), generator=g).split(128):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if stop_loss is not None and total / len(y) <= stop_loss:
            return model.eval(), done
    return model.eval(), -done  # negative: the cap came first, the criterion was not reached


def pair_row(a: nn.Module, b: nn.Module, train_data, test_data, stats) -> dict:
    out = {"linear": linear_path(a, b, train_data, test_data)}
    t0 = time.perf_counter()
    aligned = align(a, b)
    out["linear_aligned"] = linear_path(a, aligned, train_data, test_data)
    t1 = time.perf_counter()
    path = RepairedPath(a, align(a, b), stats)
    out["linear_aligned_repair"] = evaluate_path(path, train_data, test_data)
    t2 = time.perf_counter()
    return {"entries": out, "std_ratio": path.info["std_ratio"][12], "s_aligned": t1 - t0, "s_repair": t2 - t1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60, help="the cap (the cosine schedule's length)")
    ap.add_argument("--stop-loss", type=float, default=0.05, help="stop at this epoch-mean train loss (none: off)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    args = ap.parse_args()
    data = load_data("mnist1d", tempfile.mkdtemp(), num_train=4000, num_test=1000, shuffle_seq=False, gen_seed=42)
    train_data, test_data = TensorLoader(*data.train, batch_size=1000), TensorLoader(*data.test, batch_size=1000)
    x, y = probe_subset(data, REPAIR_SAMPLES, 0)
    stop = None if args.stop_loss is None or args.stop_loss <= 0 else args.stop_loss
    for depth, width in itertools.product(args.depths, args.widths):
        trained = [train(data, depth, width, s, args.epochs, stop) for s in range(args.seeds)]
        models = [m for m, _ in trained]
        rows = [pair_row(a, b, train_data, test_data, (x, y)) for a, b in itertools.combinations(models, 2)]
        mean = statistics.fmean
        secs = {k: mean(r[k] for r in rows) for k in ("s_aligned", "s_repair")}
        losses = [r["entries"]["linear"]["train_loss"][i] for r in rows for i in (0, -1)]
        unreached = " (criterion NOT reached: not comparable)" if any(e < 0 for _, e in trained) else ""
        print(
            f"depth {depth} width {width}: epochs {[abs(e) for _, e in trained]}{unreached}, endpoint train loss "
            f"{min(losses):.3f}-{max(losses):.3f}, std ratio at t=0.5 {mean(r['std_ratio'] for r in rows):.2f}, "
            f"s a pair: aligned {secs['s_aligned']:.2f}, repaired {secs['s_repair']:.2f}"
        )
        for k in BARRIERS:
            values = {m: mean(r["entries"][m][k] for r in rows) for m in METHODS}
            red = [100 * (1 - r["entries"][METHODS[2]][k] / r["entries"][METHODS[1]][k]) for r in rows]
            print(
                f"  {k:19s} " + " ".join(f"{m} {v:.3f}" for m, v in values.items())
                + f"  REPAIR lowers the aligned one by {mean(red):.0f} % [{min(red):.0f}, {max(red):.0f}]"
            )  # fmt: skip


if __name__ == "__main__":
    main()

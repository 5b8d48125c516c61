"""Measurement: how much training a Bezier curve needs before its loss barrier reflects connectivity.

Garipov et al. (2018) find near-zero train loss along fitted curves; an undertrained curve reports a barrier
that is the optimiser's, not the landscape's. For MLPs on mnist1d this trains endpoints with a plain SGD loop
(lr 0.05, momentum 0.9, wd 5e-4, cosine over 30 epochs, batch 128; cached under --cache), fits Bezier curves
(1 bend) for every (lr, batch_size, max_epochs, tol) of the grid and prints, per fit: the linear and the Bezier
train-loss barrier (25 points, BN recomputed on train), their ratio, epochs used, converged, the final
training loss and the wall time of the fit. Run: `python benchmarks/curve_budget.py --models mlp2x64`;
`--tol none` gives a fixed budget (constant LR, then the final decay, no early stop).

Measured (4000 train samples, 2 pairs per model, Bezier/linear train-loss barrier ratio, epochs used):
lr 0.05 was too small for curves (old budgets, 20 fixed epochs: 0.19-0.25; 5 epochs: 0.33-0.40); lr 0.2 was
best or tied for every model (0.4 degraded the BN MLP). fast: 0.15-0.20 in 9-15 epochs, default: 0.05-0.14
in 21-47, thorough: 0.02-0.05 in 56-98; fixed 96-epoch fits bottom out at 0.02-0.04.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from landscape_sweep.data import load_data
from landscape_sweep.landscape import evaluate_path, fit_curve
from landscape_sweep.models import build_model

MODELS = {
    "mlp2x64": ("none", 2, 64),
    "mlp1x64": ("none", 1, 64),
    "bn_mlp2x128": ("batchnorm", 2, 128),
    "mlp4x256": ("none", 4, 256),  # the mini-study's largest cell: is the LR stable there too?
}
# Recommended curve-fit presets (conf/landscape/{fast,default,thorough}.yaml), measured with this script.
PRESETS = {
    "fast": {"lr": 0.2, "batch_size": 128, "max_epochs": 15, "tol": 0.05, "window": 3},
    "default": {"lr": 0.2, "batch_size": 128, "max_epochs": 100, "tol": 0.02, "window": 5},
    "thorough": {"lr": 0.2, "batch_size": 128, "max_epochs": 300, "tol": 0.01, "window": 10},
}


def train_endpoint(name: str, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 30) -> nn.Module:
    """One endpoint: SGD (lr 0.05, momentum 0.9, wd 5e-4), per-step cosine over `epochs`, batch 128."""
    norm, depth, width = MODELS[name]
    torch.manual_seed(seed)
    model = build_model("mlp", tuple(x.shape[1:]), int(y.max()) + 1, depth, width, norm=norm)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = epochs * -(-len(y) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(128):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def endpoints(name: str, n: int, train: tuple[torch.Tensor, torch.Tensor], cache: Path) -> list[nn.Module]:
    """`n` endpoints of model `name` (seeds 0..n-1), trained once and cached as state dicts."""
    out = []
    for seed in range(n):
        path = cache / f"{name}_seed{seed}.pt"
        if path.exists():
            norm, depth, width = MODELS[name]
            model = build_model("mlp", tuple(train[0].shape[1:]), int(train[1].max()) + 1, depth, width, norm=norm)
            model.load_state_dict(torch.load(path))
            out.append(model.eval())
        else:
            out.append(train_endpoint(name, *train, seed))
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(out[-1].state_dict(), path)
    return out


def measure(a: nn.Module, b: nn.Module, train: tuple, test: tuple, lin: float, setting: dict) -> dict:
    """Fit one curve with `setting` and evaluate its train-loss barrier against the linear one."""
    t0 = time.perf_counter()
    curve = fit_curve(a, b, train, "bezier", 1, **setting)
    fit_s = time.perf_counter() - t0
    bez = evaluate_path(curve, train, test, num_points=25, bn_data=train)["loss_barrier"]
    fit = curve.fit
    return {**setting, "linear": lin, "bezier": bez, "ratio": bez / lin if lin > 0 else float("nan"),
            "epochs": fit["epochs"], "converged": fit["converged"], "final_loss": fit["final_loss"],
            "fit_s": fit_s}  # fmt: skip


def row(model: str, pair: str, r: dict) -> str:
    tol = "none" if r["tol"] is None else f"{r['tol']:g}"
    return (f"{model:<12}{pair:>5}{r['lr']:>6g}{r['batch_size']:>6}{r['max_epochs']:>6}{tol:>7}{r['window']:>4}"
            f"{r['linear']:>8.3f}{r['bezier']:>8.3f}{r['ratio']:>7.2f}{r['epochs']:>6}{str(r['converged']):>6}"
            f"{r['final_loss']:>8.4f}{r['fit_s']:>8.1f}")  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS)[:3], choices=list(MODELS))
    p.add_argument("--pairs", type=int, default=1, help="pairs (0,1), (0,2), ... per model")
    p.add_argument("--lr", nargs="+", type=float, default=[0.05])
    p.add_argument("--batch-size", nargs="+", type=int, default=[128])
    p.add_argument("--max-epochs", nargs="+", type=int, default=[10, 30, 100])
    p.add_argument("--tol", nargs="+", default=["none"], help="relative tolerances; 'none' = fixed budget")
    p.add_argument("--window", nargs="+", type=int, default=[5])
    p.add_argument("--presets", nargs="+", choices=list(PRESETS), help="measure these presets instead of the grid")
    p.add_argument("--warmup-epochs", type=int, default=0)
    p.add_argument("--decay-frac", type=float, default=0.2)
    p.add_argument("--cache", type=Path, default=Path("/tmp/curve_budget_endpoints"))
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_data("mnist1d", "data")
    train, test = bundle.train, bundle.test
    tols = [None if t == "none" else float(t) for t in args.tol]
    grid = list(itertools.product(args.lr, args.batch_size, args.max_epochs, tols, args.window))
    if args.presets:
        grid = [tuple(PRESETS[k][f] for f in ("lr", "batch_size", "max_epochs", "tol", "window")) for k in args.presets]
    print(f"mnist1d {len(train[1])} train; Bezier, 1 bend; barriers of the train loss (25 points); "
          f"{args.threads} thread(s); warmup {args.warmup_epochs}, decay_frac {args.decay_frac}")  # fmt: skip
    print(f"{'model':<12}{'pair':>5}{'lr':>6}{'bs':>6}{'maxep':>6}{'tol':>7}{'win':>4}{'linear':>8}{'bezier':>8}"
          f"{'ratio':>7}{'ep':>6}{'conv':>6}{'final':>8}{'fit s':>8}")  # fmt: skip
    for name in args.models:
        models = endpoints(name, args.pairs + 1, train, args.cache)
        for j in range(1, args.pairs + 1):
            a, b = models[0], models[j]
            lin_path = evaluate_path((a, b), train, num_points=25, bn_data=train)
            lin = lin_path["loss_barrier"]
            ends = f"{lin_path['train_loss'][0]:.3f}/{lin_path['train_loss'][-1]:.3f}"
            print(f"{name} pair 0-{j}: endpoint train losses {ends}, linear barrier {lin:.3f}", flush=True)
            ratios = []
            for lr, bs, max_epochs, tol, window in grid:
                setting = {"lr": lr, "batch_size": bs, "max_epochs": max_epochs, "tol": tol, "window": window,
                           "warmup_epochs": args.warmup_epochs, "decay_frac": args.decay_frac}  # fmt: skip
                r = measure(a, b, train, test, lin, setting)
                ratios.append(r["ratio"])
                print(row(name, f"0-{j}", r), flush=True)
            print(f"{name} pair 0-{j}: median ratio {statistics.median(ratios):.2f}", flush=True)


if __name__ == "__main__":
    main()

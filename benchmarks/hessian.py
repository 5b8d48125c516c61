"""Top Hessian eigenvalue and trace: landscape_sweep vs PyHessian (same model, data, batches, loss, eval mode).

Run: `python benchmarks/hessian.py [--threads 2] [--probes 100]` (needs `pip install pyhessian`). Prints one
row per model and quantity: both values, the median time of each over 3 runs, and the speed-up (PyHessian / ours).
Eigenvalue: both to relative tolerance 1e-3 (ours: Lanczos residual bound; PyHessian: power-iteration
relative change), checked against a tight Lanczos reference. Trace: the same number of Rademacher probes
(PyHessian with tol=-1 so it never stops early); the values differ by Monte Carlo noise only.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from mnist1d.data import get_dataset_args, make_dataset
from pyhessian import hessian as PyHessian
from torch import nn

from landscape_sweep.landscape import hessian_eigenvalues, hessian_trace


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def bn_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (1, 40)),
        nn.Conv1d(1, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Conv1d(32, 32, 5, padding=2, stride=2), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 20, 10),
    )  # fmt: skip


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 300) -> nn.Module:
    """A few hundred Adam steps on minibatches of 128, so the spectrum has its trained-model shape."""
    opt, g = torch.optim.Adam(model.parameters(), lr=1e-3), torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


REPEATS = 3


def timed(fn):
    """`fn()` and the median of REPEATS wall times (the value of the last run)."""
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--probes-per-pass", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = make_dataset(get_dataset_args())
    x, y = torch.tensor(d["x"], dtype=torch.float32), torch.tensor(d["y"], dtype=torch.long)
    batches = list(zip(x.split(1000), y.split(1000)))  # same 4 x 1000 batches for both libraries
    crit = nn.CrossEntropyLoss()
    rows = []
    for name, build in (("mnist1d MLP 40-256-256-10", mlp), ("mnist1d BN CNN (Conv1d)", bn_cnn)):
        torch.manual_seed(0)
        model = train(build(), x, y)
        n = sum(p.numel() for p in model.parameters())
        ref = hessian_eigenvalues(model, batches, tol=1e-8, max_iter=300)[0]
        (ours, info), t_ours = timed(lambda m=model: hessian_eigenvalues(m, batches, tol=1e-3, return_info=True))
        ours = ours[0]
        torch.manual_seed(0)
        ph = PyHessian(copy.deepcopy(model), crit, dataloader=batches, cuda=False)
        theirs, t_theirs = timed(lambda ph=ph: ph.eigenvalues(top_n=1, tol=1e-3)[0][0])
        agree = abs(ours - theirs) / abs(theirs)
        rows.append((name, n, "top eigenvalue", ours, theirs, t_ours, t_theirs, f"rel diff {agree:.1e}"))
        rows[-1] += (f"ref {ref:.5g}: ours {abs(ours - ref) / ref:.0e} ({info['num_hvps']} HVPs), "
                     f"pyh {abs(theirs - ref) / ref:.0e}",)
        (tr, se), t_ours = timed(
            lambda m=model: hessian_trace(m, batches, num_probes=args.probes, probes_per_pass=args.probes_per_pass)
        )
        torch.manual_seed(0)
        ph = PyHessian(copy.deepcopy(model), crit, dataloader=batches, cuda=False)
        vhv, t_theirs = timed(lambda ph=ph: ph.trace(maxIter=args.probes, tol=-1.0))
        theirs = sum(vhv) / len(vhv)
        rows.append((name, n, f"trace ({len(vhv)} probes)", tr, theirs, t_ours, t_theirs, f"ours +- {se:.3g}", ""))
    print(f"torch {torch.__version__}, {args.threads} threads, 4000 samples in batches of 1000, float32, eval mode")
    head = ("model", "params", "quantity", "ours", "PyHessian", "ours s", "PyH s", "speed-up", "agreement")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, n, what, a, b, ta, tb, note, ref in rows:
        print(f"| {name} | {n} | {what} | {a:.5g} | {b:.5g} | {ta:.2f} | {tb:.2f} | {tb / ta:.1f}x | {note} {ref} |")


if __name__ == "__main__":
    main()

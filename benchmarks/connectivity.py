"""Benchmark: vectorised path evaluation vs the naive per-point loop, and weight-matching time.

25-point linear path with BN recomputed at every point, evaluated on train and test (mnist1d): our
`linear_path` (vmap over stacked points) against deepcopy -> load interpolated state -> update BN ->
evaluate, per point. Then `align` per model family at two widths. Run: `python benchmarks/connectivity.py`.
"""

from __future__ import annotations

import copy
import time

import torch
from mnist1d.data import get_dataset_args, make_dataset

from landscape_sweep.landscape import align, evaluate, interpolate, linear_path, recompute_bn
from landscape_sweep.models import build_model


def naive_linear_path(a, b, train, test, num_points: int) -> tuple[list[float], list[float]]:
    train_loss, test_loss = [], []
    for t in torch.linspace(0, 1, num_points).tolist():
        m = copy.deepcopy(a)
        m.load_state_dict({k: torch.lerp(v, b.state_dict()[k], t) if v.is_floating_point() else v
                           for k, v in a.state_dict().items()})  # fmt: skip
        recompute_bn(m, train)
        m.eval()
        train_loss.append(evaluate(m, train)[0])
        test_loss.append(evaluate(m, test)[0])
    return train_loss, test_loss


def best_of(fn, *args, repeats: int = 3, **kwargs) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return min(times), out


def batches(x, y, size=500):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def main() -> None:
    torch.set_num_threads(1)  # stable timings on a shared machine
    args = get_dataset_args()
    args.num_samples = 5000
    d = make_dataset(args)
    x, y = torch.tensor(d["x"], dtype=torch.float32)[:, None], torch.tensor(d["y"])
    xt, yt = torch.tensor(d["x_test"], dtype=torch.float32)[:, None], torch.tensor(d["y_test"])
    print(f"mnist1d: {len(y)} train / {len(yt)} test, 25 points, BN recomputed on train, 1 CPU thread")
    print("ours = linear_path (auto: point loop on CPU); vmap = linear_path(vectorize=True)")
    head = f"{'model':<16}{'batch':>6}{'params':>8}{'naive s':>9}{'ours s':>8}{'vmap s':>8}"
    print(head + f"{'ours x':>8}{'vmap x':>8}{'max |diff|':>12}")
    for arch, depth, width in (("mlp", 2, 64), ("cnn", 2, 16)):
        torch.manual_seed(0)
        a, b = (build_model(arch, (1, 40), 10, depth, width, norm="batchnorm") for _ in range(2))
        for bs in (500, 32):
            train, test = batches(x, y, bs), batches(xt, yt, bs)
            for m in (a, b):
                recompute_bn(m, train)
            t_naive, (ref_tr, ref_te) = best_of(naive_linear_path, a, b, train, test, 25)
            t_ours, res = best_of(linear_path, a, b, train, test, num_points=25)
            t_vmap, vres = best_of(linear_path, a, b, train, test, num_points=25, vectorize=True)
            ref = ref_tr + ref_te
            diff = max(abs(u - v) for r in (res, vres) for u, v in zip(r["train_loss"] + r["test_loss"], ref))
            n = sum(p.numel() for p in a.parameters())
            print(f"{arch + ' BN w' + str(width):<16}{bs:>6}{n:>8}{t_naive:>9.3f}{t_ours:>8.3f}{t_vmap:>8.3f}"
                  f"{t_naive / t_ours:>7.1f}x{t_naive / t_vmap:>7.1f}x{diff:>12.1e}")  # fmt: skip
            mid = interpolate(a, b, 0.5, bn_data=train)
            assert abs(evaluate(mid.eval(), train)[0] - res["train_loss"][12]) < 1e-5

    print("\nalign (weight matching) on two independently initialised models, 1-D input (1, 40)")
    print(f"{'family':<14}{'depth':>6}{'width':>6}{'params':>10}{'groups':>8}{'time s':>9}")
    for arch, depth, widths in (("mlp", 3, (64, 256)), ("cnn", 3, (16, 64)), ("resnet", 2, (8, 32)),
                                ("wide_resnet", 10, (1, 4))):  # fmt: skip
        for width in widths:
            torch.manual_seed(0)
            a, b = (build_model(arch, (1, 40), 10, depth, width, norm="batchnorm") for _ in range(2))
            t, _ = best_of(align, a, b, repeats=1)
            n = sum(p.numel() for p in a.parameters())
            print(f"{arch:<14}{depth:>6}{width:>6}{n:>10}{len(a.permutation_spec()):>8}{t:>9.3f}")


if __name__ == "__main__":
    main()

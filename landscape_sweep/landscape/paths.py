"""Evaluate paths between minima: loss/accuracy along t, barriers and weight-space geometry.

The cost centre of a sweep is evaluating many points of a path. Points are written as
`coeffs @ controls` (P coefficient rows over K flat control vectors: a segment, a curve's control
points, or a plane's origin and directions; points that are not linear in fixed controls, such as
REPAIR's, are their own controls with identity coefficients: `path_frame`) and evaluated together:
the point weights are stacked and `torch.func.vmap` runs `functional_call` over them, for the BN
recompute pass (train-mode BN with per-point functional running-stat buffers, updated in place by
batch_norm) and for evaluation. Each data batch is read once per chunk of points. Results equal a
per-point loop (load, update BN, evaluate on one reused copy); `evaluate_points` falls back to that
loop when vmap cannot run the model.

When to vectorise (`vectorize=None` = auto): on accelerators, where a per-point loop is bound by kernel
launches, vmap. On CPU the loop: there each op is already compute/bandwidth bound, and measured vmap
was no faster at eval batches >= 128 (2.4x faster at batch 32 for an MLP, but slower for conv nets,
whose vmapped max-pool/BatchNorm take slow paths); see benchmarks/connectivity.py.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from landscape_sweep.checks import check_choice, check_int, fail

from ._core import (
    Data,
    LossFn,
    default_loss,
    evaluate,
    has_batchnorm,
    iter_batches,
    model_device,
    preserved,
    unflatten_like,
)
from .curves import Curve
from .interpolation import BatchNormBase, bn_buffer_names, recompute_bn
from .repair import RepairedPath

BARRIER_KINDS = ("linear", "mean")
_CHUNK_FLOATS = 2**25  # stacked point weights per vmapped chunk (~128 MB in float32)


def _vmapped(
    model: nn.Module, params: dict[str, Tensor], datasets: Sequence[Data], bn_data: Data | None, loss_fn: LossFn
) -> list[tuple[Tensor, Tensor]]:
    c = next(iter(params.values())).shape[0]
    device = model_device(model)
    fixed = {k: v for k, v in model.state_dict().items() if k not in params}
    bn: dict[str, Tensor] = {}

    def f(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, {**fixed, **p, **b}, (x,))

    run = vmap(f, in_dims=(0, 0, None))
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, BatchNormBase) and m.track_running_stats]
    if bn_data is not None and bns:
        momenta = [m.momentum for _, m in bns]
        for n, m in bns:
            pre = f"{n}." if n else ""
            bn[pre + "running_mean"] = m.running_mean.new_zeros(c, *m.running_mean.shape)
            bn[pre + "running_var"] = m.running_var.new_ones(c, *m.running_var.shape)
            fixed[pre + "num_batches_tracked"] = m.num_batches_tracked.clone()
            m.train()
        try:
            seen = 0
            for x, _ in iter_batches(bn_data, device):
                for _, m in bns:  # cumulative average, batches weighted by size (as recompute_bn)
                    m.momentum = x.shape[0] / (seen + x.shape[0])
                run(params, bn, x)
                seen += x.shape[0]
        finally:
            for (_, m), mom in zip(bns, momenta):
                m.momentum = mom
            model.eval()
    out = []
    for data in datasets:
        loss, correct = (torch.zeros(c, dtype=torch.float64, device=device) for _ in range(2))
        n = 0
        for x, y in iter_batches(data, device):
            logits = run(params, bn, x)
            loss += vmap(loss_fn, in_dims=(0, None))(logits, y).double() * y.shape[0]
            correct += (logits.argmax(-1) == y).sum(-1)
            n += y.shape[0]
        out.append((loss / n, correct / n))
    return out


def _looped(
    model: nn.Module, params: dict[str, Tensor], datasets: Sequence[Data], bn_data: Data | None, loss_fn: LossFn
) -> list[tuple[Tensor, Tensor]]:
    c = next(iter(params.values())).shape[0]
    rows = []
    for i in range(c):
        model.load_state_dict({k: v[i] for k, v in params.items()}, strict=False)
        if bn_data is not None:
            recompute_bn(model, bn_data)
        rows.append([evaluate(model.eval(), d, loss_fn) for d in datasets])
    cols = [[r[j] for r in rows] for j in range(len(datasets))]
    return [
        (torch.tensor([v[0] for v in col], dtype=torch.float64), torch.tensor([v[1] for v in col], dtype=torch.float64))
        for col in cols
    ]


@torch.no_grad()
def evaluate_points(
    model: nn.Module,
    coeffs: Tensor,
    controls: Tensor,
    names: list[tuple[str, torch.Size]],
    datasets: Sequence[Data],
    bn_data: Data | None = None,
    loss_fn: LossFn = default_loss,
    vectorize: bool | None = None,
) -> list[tuple[list[float], list[float]]]:
    """(losses, accuracies) per dataset at the P points `coeffs @ controls` (varied state `names`).

    `model` supplies the architecture and the non-varied state (left unchanged). With `bn_data` the BN
    statistics are recomputed at every point; without, the model's own are used. `vectorize`: True =
    vmap over points, False = point by point, None = vmap off CPU only (see module doc); a model vmap
    cannot run falls back to the loop with a warning.
    """
    if vectorize is None:
        vectorize = model_device(model).type != "cpu"
    num, dim = coeffs.shape[0], controls.shape[1]
    chunk = max(1, min(num, _CHUNK_FLOATS // max(dim, 1)))
    if not (bn_buffer_names(model) and bn_data is not None):
        bn_data = None
    parts: list[list[tuple[Tensor, Tensor]]] = []
    with preserved(model, mode="eval"):
        for s in range(0, num, chunk):
            params = unflatten_like(coeffs[s : s + chunk] @ controls, names)
            if vectorize:
                try:
                    parts.append(_vmapped(model, params, datasets, bn_data, loss_fn))
                    continue
                except Exception as e:  # vmap cannot run every model (data-dependent control flow, ...)
                    warnings.warn(f"vmap failed ({type(e).__name__}: {e}); evaluating point by point", stacklevel=2)
                    vectorize = False
            parts.append(_looped(model, params, datasets, bn_data, loss_fn))
    return [
        (torch.cat([p[j][0].cpu() for p in parts]).tolist(), torch.cat([p[j][1].cpu() for p in parts]).tolist())
        for j in range(len(datasets))
    ]


def barrier(t: Sequence[float], values: Sequence[float], kind: str = "linear") -> float:
    """Barrier of a curve of `values` over `t` (t[0]=0, t[-1]=1; Entezari et al. 2022).

    kind="linear": `max_t [v(t) - ((1 - t) v(0) + t v(1))]`; kind="mean": `max_t v(t) - (v(0) + v(1)) / 2`.
    """
    check_choice("kind", kind, BARRIER_KINDS)
    v0, v1 = values[0], values[-1]
    if kind == "linear":
        return max(v - ((1 - s) * v0 + s * v1) for s, v in zip(t, values))
    return max(values) - (v0 + v1) / 2


@torch.no_grad()
def path_geometry(coeffs: Tensor, controls: Tensor) -> dict[str, float | None]:
    """Length, endpoint distance, total turning angle (rad) and arc/chord ratio of the polyline.

    Computed in float64, one segment at a time (memory of two weight vectors).
    """
    ctrl = controls.double()
    coeffs = coeffs.to(ctrl)
    length, turning, prev = 0.0, 0.0, None
    for i in range(coeffs.shape[0] - 1):
        seg = (coeffs[i + 1] - coeffs[i]) @ ctrl
        norm = float(seg.norm())
        length += norm
        if norm == 0.0:
            continue
        unit = seg / norm
        if prev is not None:  # stable angle between unit vectors (no acos near 1)
            turning += 2 * math.atan2(float((unit - prev).norm()), float((unit + prev).norm()))
        prev = unit
    chord = float(((coeffs[-1] - coeffs[0]) @ ctrl).norm())
    return {
        "path_length": length,
        "endpoint_distance": chord,
        "path_curvature": turning,
        "arc_chord_ratio": length / chord if chord > 0 else None,
    }


def _ood_curve(ts: list[float], loss: list[float], acc: list[float]) -> dict:
    """Loss and accuracy along t of one shifted set with their barriers (against the chord, as for test)."""
    err = [1 - a for a in acc]
    return {"loss": loss, "acc": acc, "loss_barrier": barrier(ts, loss), "error_barrier": barrier(ts, err)}


def path_frame(path: Curve | RepairedPath, t: Tensor) -> tuple[Tensor, Tensor]:
    """`(coeffs, controls)` whose product is the path's points at `t`: a curve's own, or for a path whose
    points are not linear in fixed controls (`RepairedPath`) the points themselves with identity coefficients."""
    if isinstance(path, Curve):
        return path.coefficients(t), path.controls().detach()
    points = path.points(t)
    return torch.eye(len(t), dtype=points.dtype, device=points.device), points


def evaluate_path(
    path: Curve | RepairedPath | tuple[nn.Module, nn.Module],
    train_data: Data,
    test_data: Data | None = None,
    num_points: int = 25,
    bn_data: Data | None = None,
    loss_fn: LossFn = default_loss,
    vectorize: bool | None = None,
    ood_data: Mapping[str, Data] | None = None,
) -> dict:
    """Evaluate a curve, a `RepairedPath` or the segment of a `(model_a, model_b)` pair at `num_points` even t.

    Returns a connectivity entry of results.json (without `pair`/`method`): `t`, train/test loss and
    accuracy per t, barriers (`loss_barrier`, `error_barrier`, `test_...`, and `..._mean` variants),
    `path_length`, `endpoint_distance`, `path_curvature`, `arc_chord_ratio` (of the polyline through the
    evaluated points). Test fields are None without `test_data`. BN statistics are recomputed at each point
    over `bn_data` (default: `train_data`).
    `ood_data` (`{name: data}`, e.g. shifted test sets) adds `ood`: `{name: {loss, acc, loss_barrier,
    error_barrier}}`, evaluated at the same points with the same recomputed statistics (None without it).
    `vectorize`: see `evaluate_points`.
    """
    if isinstance(path, (Curve, RepairedPath)):
        curve = path
    elif isinstance(path, (tuple, list)) and len(path) == 2:
        curve = Curve(path[0], path[1], "polychain", 0)
    else:
        fail("path", type(path), "must be a Curve, a RepairedPath or a (model_a, model_b) pair")
    check_int("num_points", num_points, low=2)
    if has_batchnorm(curve.model) and bn_data is None:
        bn_data = train_data
    t = torch.linspace(0, 1, num_points, dtype=torch.float64)
    coeffs, controls = path_frame(curve, t)
    ood = dict(ood_data or {})
    datasets = [train_data, *([test_data] if test_data is not None else []), *ood.values()]
    evals = evaluate_points(curve.model, coeffs, controls, curve.names, datasets, bn_data, loss_fn, vectorize)
    ts = t.tolist()
    out: dict = {"t": ts}
    evals, ood_evals = evals[: len(evals) - len(ood)], evals[len(evals) - len(ood) :]
    if ood_data is not None:
        out["ood"] = {name: _ood_curve(ts, *res) for name, res in zip(ood, ood_evals)}
    for prefix, res in zip(("train", "test"), evals + [None]):
        loss, acc = res if res is not None else (None, None)
        err = None if acc is None else [1 - a for a in acc]
        out[f"{prefix}_loss"], out[f"{prefix}_acc"] = loss, acc
        key = "" if prefix == "train" else "test_"
        for suffix, kind in (("", "linear"), ("_mean", "mean")):
            out[f"{key}loss_barrier{suffix}"] = None if loss is None else barrier(ts, loss, kind)
            out[f"{key}error_barrier{suffix}"] = None if err is None else barrier(ts, err, kind)
    out.update(path_geometry(coeffs, controls))
    return out


def linear_path(
    model_a: nn.Module,
    model_b: nn.Module,
    train_data: Data,
    test_data: Data | None = None,
    num_points: int = 25,
    bn_data: Data | None = None,
    **kwargs,
) -> dict:
    """`evaluate_path` on the straight segment from `model_a` to `model_b` (see there for the fields)."""
    return evaluate_path(Curve(model_a, model_b, "polychain", 0), train_data, test_data, num_points, bn_data, **kwargs)

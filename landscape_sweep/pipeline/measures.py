"""The landscape measures of a cell, in one place: what `landscape.*` asks for, computed by `landscape/`.

Used by the training callback (trajectory points), by the cell after training and by re-analysis alike.
Every function returns new values (never mutates an endpoint or a results record):
- `trajectory_point`: top Hessian eigenvalue (with its Lanczos residual), Hutchinson trace ± stderr and the loss
  on the probe subset, labelled with the weights it was measured on (`running` or `swa_average`); the same budget
  and subset at every epoch and at the end, so the points of a trajectory are comparable.
- `endpoint_measures`: every sharpness measure of a trained endpoint (with `sharpness.per_block` also the top
  eigenvalue and trace of each block of `model.param_blocks()`), its loss surface (if asked), its loss and
  accuracy on each out-of-distribution set (`data.ood`) and its trajectory closed by the final point.
- `pair_paths`: every configured path between two endpoints (built by `path_builders.fit_path`, the builder its
  `results.PATH_METHODS` entry names), evaluated on train, test and the OOD sets with BN recomputed (one pass per
  point over each set, the statistics shared); REPAIR's unit statistics come from the probe subset (at most
  `REPAIR_SAMPLES` of it).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from typing import Any

import torch
from torch import nn

from landscape_sweep.data import DataBundle, TensorLoader
from landscape_sweep.landscape import (
    Curve,
    block_curvature,
    evaluate,
    evaluate_path,
    hessian_eigenvalues,
    hessian_spectrum,
    hessian_trace,
    interpolate,
    loss_surface,
    num_samples,
    plane_surface,
    preserved,
    sharpness,
)
from landscape_sweep.landscape.blocks import concentration
from landscape_sweep.landscape.repair import RepairedPath
from landscape_sweep.pipeline.path_builders import (  # noqa: F401 (AnalysisData, REPAIR_SAMPLES: re-exported)
    REPAIR_SAMPLES,
    AnalysisData,
    fit_path,
)
from landscape_sweep.results import SHARPNESS_KINDS, Endpoint, PathEntry

log = logging.getLogger(__name__)


def probe_subset(data: DataBundle, size: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded subset of `size` training samples (all of them for None or a larger size)."""
    x, y = data.train
    if size is None or size >= len(y):
        return x, y
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:size].to(y.device)
    return x[idx], y[idx]


def analysis_data(cfg: dict[str, Any], data: DataBundle) -> AnalysisData:
    landscape, seed, bs = cfg["landscape"], cfg["seed"], cfg["data"]["eval_batch_size"]
    curve = landscape["connectivity"]["curve"]
    return AnalysisData(
        probe=TensorLoader(*probe_subset(data, landscape["analysis_size"], seed), batch_size=bs),
        train=TensorLoader(*data.train, batch_size=bs),
        test=TensorLoader(*data.test, batch_size=bs),
        curve_train=TensorLoader(
            *data.train, batch_size=curve["batch_size"], shuffle=True, seed=seed, augment=data.augment
        ),
        ood={name: TensorLoader(*split, batch_size=bs) for name, split in data.ood.items()},
        ood_controls=data.ood_controls,
    )


def trajectory_point(
    model: nn.Module, probe: TensorLoader, sharp: dict[str, Any], seed: int, *, epoch: int | None, weights: str
) -> dict[str, Any]:
    """One point of the sharpness trajectory (see the module docstring); the model is left as it was."""
    eigs, info = hessian_eigenvalues(
        model, probe, k=1, tol=sharp["tol"], max_iter=sharp["max_iter"], seed=seed, return_info=True
    )
    trace = hessian_trace(model, probe, num_probes=sharp["trace_probes"], seed=seed)
    return _point(model, probe, epoch, weights, (eigs[0], info["residuals"][0], info["converged"]), trace)


def _point(model: nn.Module, probe: TensorLoader, epoch: int | None, weights: str, top: tuple, trace: tuple) -> dict:
    """The fields of a trajectory point: top eigenvalue (value, residual, converged), trace ± stderr, probe loss."""
    loss, acc = evaluate(model, probe)
    return {
        "epoch": epoch,
        "weights": weights,
        "hessian_top_eig": top[0],
        "hessian_top_eig_residual": top[1],
        "hessian_top_eig_converged": top[2],
        "hessian_trace": trace[0],
        "hessian_trace_stderr": trace[1],
        "train_loss": loss,
        "train_acc": acc,
    }


def endpoint_sharpness(model: nn.Module, probe: TensorLoader, sharp: dict[str, Any], seed: int) -> dict[str, Any]:
    """Every sharpness measure of one endpoint (eval mode, BN running statistics) with its estimate quality."""
    k = sharp["top_k"]
    eigs, info = hessian_eigenvalues(
        model, probe, k=k, tol=sharp["tol"], max_iter=max(sharp["max_iter"], k), seed=seed, return_info=True
    )
    out: dict[str, Any] = {
        "hessian_top_eigs": eigs,
        "hessian_top_eigs_residuals": info["residuals"],
        "hessian_top_eigs_converged": info["converged"],
        "analysis_size": num_samples(probe),
    }
    out["hessian_trace"], out["hessian_trace_stderr"] = hessian_trace(
        model, probe, num_probes=sharp["trace_probes"], seed=seed
    )
    for kind in sharp["kinds"]:
        adaptive, key = kind.startswith("adaptive_"), SHARPNESS_KINDS[kind]
        if kind.endswith("average"):  # antithetic pairs: the first-order term cancels
            sigma = sharp["adaptive_average_sigma" if adaptive else "average_sigma"]
            out[key], out[f"{key}_stderr"] = sharpness(
                model, probe, "average", sigma, adaptive=adaptive, num_samples=sharp["num_samples"], seed=seed,
                return_stderr=True,
            )  # fmt: skip
        else:
            rho = sharp["adaptive_rho" if adaptive else "rho"]
            out[key] = sharpness(model, probe, "worst", rho, adaptive=adaptive, steps=sharp["steps"], seed=seed)
    if "average" in sharp["kinds"]:
        out.update(quadratic_ratio(out, sharp["average_sigma"]))
    if sharp.get("per_block"):  # where the curvature sits: each block's diagonal Hessian block, rest fixed
        out["blocks"] = block_curvature(
            model, probe, tol=sharp["tol"], max_iter=sharp["max_iter"], num_probes=sharp["trace_probes"], seed=seed
        )
        out["block_concentration"] = concentration(out["blocks"])
    if sharp.get("spectrum"):
        nodes, weights = hessian_spectrum(model, probe, seed=seed)
        out["hessian_spectrum"] = {"nodes": [float(v) for v in nodes], "weights": [float(v) for v in weights]}
    return out


def quadratic_ratio(measured: dict[str, Any], sigma: float) -> dict[str, float]:
    """`average_case_ratio` (± `_stderr`): average-case sharpness over its quadratic part `sigma^2 tr(H) / 2`.

    For a twice-differentiable loss (GELU, tanh) the antithetic average case is `sigma^2 tr(H) / 2 + O(sigma^4)`, so
    the ratio is ~1. For ReLU networks it is larger and grows as sigma shrinks (mnist1d MLPs: 1.0-1.3 at width 16,
    2-3 at widths 64-256 with sigma = 0.003; 5.8 at sigma = 1e-4 on 2x256): a perturbation that flips a unit across
    its kink changes the loss at first order in |delta|, which the Hessian (zero almost everywhere inside a linear
    region) does not see. The average case then measures the curvature of the Gaussian-smoothed loss at scale
    sigma, kinks included; the ratio says how much of it the Hessian trace accounts for. Empty without both
    measures (or a trace <= 0)."""
    avg, trace = measured.get("average_case"), measured.get("hessian_trace")
    if avg is None or trace is None or not trace > 0:
        return {}
    quad = sigma**2 * trace / 2
    rel = math.hypot(measured.get("average_case_stderr", 0.0) / avg if avg else 0.0,
                     measured.get("hessian_trace_stderr", 0.0) / trace)  # fmt: skip
    return {"average_case_ratio": avg / quad, "average_case_ratio_stderr": abs(avg / quad) * rel}


def endpoint_ood(model: nn.Module, ad: AnalysisData) -> dict[str, dict[str, Any]]:
    """`{name: {loss, acc}}` of a model on each OOD set, in eval mode (as the endpoint's test metrics); a control
    set's entry also says `control: true`."""
    out: dict[str, dict[str, Any]] = {}
    with preserved(model, "eval"):
        for name, loader in ad.ood.items():
            loss, acc = evaluate(model, loader)
            out[name] = {"loss": loss, "acc": acc} | ({"control": True} if name in ad.ood_controls else {})
    return out


def endpoint_measures(
    model: nn.Module, endpoint: Endpoint, ad: AnalysisData, landscape: dict[str, Any], seed: int, *, weights: str
) -> dict[str, Any]:
    """`sharpness`, `loss_surface`, `ood` and the `trajectory` (in-training points + the final point) of an
    endpoint."""
    t0 = time.perf_counter()
    sharp = landscape["sharpness"]
    measured = endpoint_sharpness(model, ad.probe, sharp, seed)
    # the final point reuses the endpoint's measurement (same probe subset, budget and seed) instead of repeating it
    top = (measured["hessian_top_eigs"][0], measured["hessian_top_eigs_residuals"][0])
    top += (measured["hessian_top_eigs_converged"],)
    trace = (measured["hessian_trace"], measured["hessian_trace_stderr"])
    final = _point(model, ad.probe, endpoint.epochs, weights, top, trace)
    out: dict[str, Any] = {
        "sharpness": measured,
        "trajectory": [p for p in endpoint.trajectory if p.get("epoch") != endpoint.epochs] + [final],
        "loss_surface": None,
        "ood": endpoint_ood(model, ad),
    }
    surf = landscape["surface"]
    if surf["enabled"]:  # 2-D filter-normalised loss surface around the endpoint (Li et al. 2018)
        out["loss_surface"] = loss_surface(
            model, ad.probe, dims=2, span=(-surf["span"], surf["span"]), num_points=surf["num_points"], seed=seed,
            bn_data=ad.train,
        )  # fmt: skip
    log.info("seed %s: sharpness in %.1fs", endpoint.seed, time.perf_counter() - t0)
    return out


def sharpness_along(path: Any, ts: list[float], ad: AnalysisData, sharp: dict[str, Any], seed: int) -> dict:
    """Top Hessian eigenvalue at points `ts` of a path (BN statistics recomputed at each point); with
    `sharp["per_block"]` each block's too (`blocks`: {name: {top_eig, top_eig_residual, top_eig_converged}}, per t)."""
    eigs, blocks = [], {}
    for t in ts:
        model = interpolate(path[0], path[1], t, ad.train) if isinstance(path, tuple) else path.model_at(t, ad.train)
        top = hessian_eigenvalues(model, ad.probe, k=1, tol=sharp["tol"], max_iter=sharp["max_iter"], seed=seed)
        eigs.append(top[0])
        if sharp.get("per_block"):
            recs = block_curvature(
                model, ad.probe, tol=sharp["tol"], max_iter=sharp["max_iter"], trace=False, seed=seed
            )
            for r in recs:
                b = blocks.setdefault(r["name"], dict(top_eig=[], top_eig_residual=[], top_eig_converged=[]))
                for key in b:
                    b[key].append(r[key])
    out: dict[str, Any] = {"t": [float(t) for t in ts], "hessian_top_eig": eigs}
    return out | ({"blocks": blocks} if blocks else {})


def pair_paths(
    a: nn.Module, b: nn.Module, pair: tuple[int, int], ad: AnalysisData, landscape: dict[str, Any], seed: int
) -> list[PathEntry]:
    """Every configured path between two endpoints (see the module docstring)."""
    conn, out, done = landscape["connectivity"], [], {}
    for method in conn["methods"]:
        t0 = time.perf_counter()
        path = fit_path(a, b, method, ad, conn, seed)
        # REPAIR without corrected units (BatchNorm nets: the BN reset is REPAIR) is the aligned segment: reused
        same = done.get("linear_aligned") if isinstance(path, RepairedPath) and not path.sites else None
        entry = dict(same) if same is not None else evaluate_path(
            path, ad.train, ad.test, num_points=conn["num_points"], bn_data=ad.train, ood_data=ad.ood or None
        )  # fmt: skip
        done[method] = entry
        if isinstance(path, RepairedPath):
            entry["repair"] = dict(path.info)
        if isinstance(path, Curve):
            entry["fit"] = path.fit
            if landscape["surface"]["enabled"]:  # the plane through both endpoints and the first bend
                entry["plane_surface"] = plane_surface(
                    a,
                    b,
                    path.control_model(1),
                    ad.train,
                    num_points=landscape["surface"]["num_points"],
                    bn_data=ad.train,
                )
        if conn["sharpness_points"] and same is None:
            entry["sharpness_along_path"] = sharpness_along(
                path, conn["sharpness_points"], ad, landscape["sharpness"], seed
            )
        entry.update(pair=list(pair), method=method, time_s=time.perf_counter() - t0)
        out.append(PathEntry.from_dict(entry))
    return flag_high_loss(out)


# a fitted curve whose train loss barrier keeps more than this fraction of the pair's linear barrier did not find a
# low-loss path (Garipov et al. 2018 remove nearly all of it): undertrained, or endpoints a one-bend curve cannot join
HIGH_LOSS_FRACTION = 0.2
HIGH_LOSS_FLOOR = 0.01  # loss units: a barrier below this is low whatever the linear one (both near zero)


def flag_high_loss(entries: list[PathEntry]) -> list[PathEntry]:
    """Set `fit["high_loss"]` on the fitted curves of one pair: their loss along t stays well above the endpoints'
    (barrier > HIGH_LOSS_FRACTION of the pair's linear barrier and > HIGH_LOSS_FLOOR); None without a linear path."""
    linear = next((p.loss_barrier for p in entries if p.method == "linear"), None)
    for p in entries:
        if p.fit is not None:
            known = linear is not None and p.loss_barrier is not None
            limit = max(HIGH_LOSS_FRACTION * linear, HIGH_LOSS_FLOOR) if known else None
            p.fit["high_loss"] = bool(p.loss_barrier > limit) if known else None
    return entries


def cell_paths(models: list[nn.Module], ad: AnalysisData, landscape: dict[str, Any], seed: int) -> list[PathEntry]:
    """The paths of every pair of endpoints, pairs in order (0, 1), (0, 2), (1, 2), ..."""
    out: list[PathEntry] = []
    for i, j in itertools.combinations(range(len(models)), 2):
        out += pair_paths(models[i], models[j], (i, j), ad, landscape, seed)
    return out

"""Post-hoc analysis of a cell's trained endpoints: sharpness of each endpoint, connectivity of each pair.

Everything is computed by `landscape/` on in-memory data; this module only decides what to compute from
`cfg.landscape` and shapes the results into the results.json contract.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from typing import Any

import torch
from torch import nn

from landscape_sweep import landscape as L
from landscape_sweep.data import DataBundle, TensorLoader

log = logging.getLogger(__name__)

METHODS = ("linear", "linear_aligned", "bezier", "polychain")
SHARPNESS_KINDS = ("worst", "average", "adaptive_worst", "adaptive_average")
SHARPNESS_KEYS = {
    "worst": "worst_case",
    "average": "average_case",
    "adaptive_worst": "adaptive_worst_case",
    "adaptive_average": "adaptive_average_case",
}


def analysis_subset(data: DataBundle, size: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded subset of the (un-augmented) training split for Hessian and sharpness estimates."""
    x, y = data.train
    if size is None or size >= len(y):
        return x, y
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:size].to(y.device)
    return x[idx], y[idx]


def batched(xy: tuple[torch.Tensor, torch.Tensor], batch_size: int) -> TensorLoader:
    return TensorLoader(xy[0], xy[1], batch_size=batch_size)


def endpoint_sharpness(model: nn.Module, data: TensorLoader, sharp: dict[str, Any], seed: int) -> dict[str, Any]:
    """Every sharpness measure of one endpoint (eval mode, BN running statistics)."""
    out: dict[str, Any] = {}
    out["hessian_top_eigs"] = L.hessian_eigenvalues(
        model, data, k=sharp["top_k"], tol=sharp["tol"], max_iter=max(sharp["max_iter"], sharp["top_k"]), seed=seed
    )
    out["hessian_trace"], out["hessian_trace_stderr"] = L.hessian_trace(
        model, data, num_probes=sharp["trace_probes"], seed=seed
    )
    dim = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for kind in sharp["kinds"]:
        adaptive, key = kind.startswith("adaptive_"), SHARPNESS_KEYS[kind]
        rho = sharp["adaptive_rho"] if adaptive else sharp["rho"]
        if kind.endswith("average"):  # per-coordinate std rho/sqrt(d): the worst-case ball's expected radius
            sigma = rho / math.sqrt(dim)
            out[key], out[f"{key}_stderr"] = L.sharpness(
                model,
                data,
                "average",
                sigma,
                adaptive=adaptive,
                num_samples=sharp["num_samples"],
                seed=seed,
                return_stderr=True,
            )
        else:
            out[key] = L.sharpness(model, data, "worst", rho, adaptive=adaptive, steps=sharp["steps"], seed=seed)
    if sharp.get("spectrum"):
        nodes, weights = L.hessian_spectrum(model, data, seed=seed)
        out["hessian_spectrum"] = {"nodes": [float(v) for v in nodes], "weights": [float(v) for v in weights]}
    return out


def pair_connectivity(
    a: nn.Module,
    b: nn.Module,
    pair: tuple[int, int],
    train: TensorLoader,
    test: TensorLoader,
    hess_data: TensorLoader,
    land: dict[str, Any],
    seed: int,
) -> list[dict[str, Any]]:
    """Every configured path between two endpoints, evaluated on train and test with BN recomputed."""
    conn, out = land["connectivity"], []
    aligned = None
    for method in conn["methods"]:
        t0 = time.perf_counter()
        if method == "linear":
            path: Any = (a, b)
        elif method == "linear_aligned":
            aligned = aligned if aligned is not None else L.align(a, b, seed=seed)
            path = (a, aligned)
        else:
            cc = conn["curve"]
            path = L.fit_curve(
                a,
                b,
                train,
                kind=method,
                num_bends=cc["num_bends"],
                epochs=cc["epochs"],
                lr=cc["lr"],
                batch_size=cc["batch_size"],
                seed=seed,
            )
        entry = L.evaluate_path(path, train, test, num_points=conn["num_points"], bn_data=train)
        surf = land["surface"]
        if surf["enabled"] and isinstance(path, L.Curve):  # the plane through both endpoints and the first bend
            entry["plane_surface"] = L.plane_surface(
                a, b, path.control_model(1), train, num_points=surf["num_points"], bn_data=train
            )
        if conn["sharpness_points"]:
            entry["sharpness_along_path"] = sharpness_along(
                path, conn["sharpness_points"], hess_data, train, land["sharpness"], seed
            )
        entry.update(pair=list(pair), method=method, time_s=time.perf_counter() - t0)
        out.append(entry)
    return out


def sharpness_along(
    path: Any, ts: list[float], hess_data: TensorLoader, bn_data: TensorLoader, sharp: dict[str, Any], seed: int
) -> dict[str, list[float]]:
    """Top Hessian eigenvalue at points `ts` of a path (BN statistics recomputed at each point)."""
    eigs = []
    for t in ts:
        model = L.interpolate(path[0], path[1], t, bn_data) if isinstance(path, tuple) else path.model_at(t, bn_data)
        eigs.append(
            L.hessian_eigenvalues(model, hess_data, k=1, tol=sharp["tol"], max_iter=sharp["max_iter"], seed=seed)[0]
        )
    return {"t": [float(t) for t in ts], "hessian_top_eig": eigs}


def analyze_cell(
    c: dict[str, Any],
    data: DataBundle,
    models: list[nn.Module],
    endpoints: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Fill each endpoint's `sharpness` (and the trajectory's final point); return the connectivity entries."""
    land, seed, bs = c["landscape"], c["seed"], c["data"]["eval_batch_size"]
    hess_data = batched(analysis_subset(data, land["analysis_size"], seed), bs)
    train, test = batched(data.train, bs), batched(data.test, bs)
    for model, entry in zip(models, endpoints):
        t0 = time.perf_counter()
        entry["sharpness"] = endpoint_sharpness(model, hess_data, land["sharpness"], seed)
        surf = land["surface"]
        if surf["enabled"]:  # 2-D filter-normalised loss surface around the endpoint (Li et al. 2018)
            entry["loss_surface"] = L.loss_surface(
                model,
                hess_data,
                dims=2,
                span=(-surf["span"], surf["span"]),
                num_points=surf["num_points"],
                seed=seed,
                bn_data=train,
            )
        final = {
            "epoch": entry.get("epochs"),
            "hessian_top_eig": entry["sharpness"]["hessian_top_eigs"][0],
            "hessian_trace": entry["sharpness"]["hessian_trace"],
            "train_loss": entry["train_loss"],
            "train_acc": entry["train_acc"],
        }
        entry["trajectory"] = [p for p in entry.get("trajectory", []) if p.get("epoch") != final["epoch"]] + [final]
        log.info("seed %s: sharpness in %.1fs", entry["seed"], time.perf_counter() - t0)
    connectivity = []
    for i, j in itertools.combinations(range(len(models)), 2):
        connectivity += pair_connectivity(models[i], models[j], (i, j), train, test, hess_data, land, seed)
    return connectivity

"""Curvature per block of parameters: where in a network the sharpness sits.

The Hessian of the loss w.r.t. one block's parameters with every other parameter fixed is the block's diagonal
submatrix of the full Hessian. `HessianOperator` restricted to the block (`block_filter`) gives exactly its
products, so `hessian_eigenvalues` (Lanczos) and `hessian_trace` (Hutchinson) run on it unchanged. The block
traces add up to the full trace (a decomposition); the block top eigenvalues do not (each is at most the full
one). Blocks come from the model (`model.param_blocks()` for the framework's families) or are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from landscape_sweep.checks import check_choice, check_int

from ._core import Data, LossFn, ParamFilter, default_loss, preserved
from .hessian import hessian_eigenvalues, hessian_trace
from .hvp import MODES, HessianOperator

Blocks = Mapping[str, Sequence[str]]


def block_filter(names: Collection[str]) -> ParamFilter:
    """A parameter filter selecting exactly the parameters named in `names` (one block)."""
    chosen = frozenset(names)
    return lambda name, p: name in chosen


def model_blocks(model: nn.Module, blocks: Blocks | None = None) -> dict[str, list[str]]:
    """`blocks` (default `model.param_blocks()`), checked: every trainable parameter in exactly one block.

    ValueError naming the parameter otherwise (unknown, repeated or left out)."""
    if blocks is None:
        if not hasattr(model, "param_blocks"):
            raise ValueError(f"blocks: {type(model).__name__} has no param_blocks(); pass blocks explicitly")
        blocks = model.param_blocks()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    seen: dict[str, str] = {}
    for block, names in blocks.items():
        for name in names:
            if name not in trainable:
                raise ValueError(f"blocks.{block}: {name!r} is not a trainable parameter of the model")
            if name in seen:
                raise ValueError(f"blocks.{block}: {name!r} is already in block {seen[name]!r}")
            seen[name] = block
    missing = [n for n in trainable if n not in seen]
    if missing:
        raise ValueError(f"blocks: parameter {missing[0]!r} is in no block ({len(missing)} left out)")
    return {block: list(names) for block, names in blocks.items() if names}


def block_hessian(
    model: nn.Module,
    data: Data,
    names: Collection[str],
    *,
    loss_fn: LossFn = default_loss,
    mode: str = "eval",
    chunk: int = 64,
) -> Tensor:
    """The dense Hessian of the block `names` (dim x dim, `select_params` order), from `dim` exact products
    (`chunk` per data pass). For small blocks: exact eigenvalues and trace."""
    check_choice("mode", mode, MODES)
    with preserved(model, mode):
        op = HessianOperator(model, data, loss_fn, block_filter(names))
        eye = torch.eye(op.dim, device=op.device, dtype=op.dtype)
        H = torch.cat([op.matmat(eye[i : i + chunk]) for i in range(0, op.dim, chunk)])
    return ((H + H.T) / 2).detach()


def block_curvature(
    model: nn.Module,
    data: Data,
    blocks: Blocks | None = None,
    *,
    tol: float = 1e-3,
    max_iter: int = 60,
    num_probes: int = 50,
    probes_per_pass: int = 10,
    trace: bool = True,
    exact_max_dim: int = 0,
    seed: int = 0,
    loss_fn: LossFn = default_loss,
    mode: str = "eval",
) -> list[dict[str, Any]]:
    """Top Hessian eigenvalue and trace of each block (its diagonal Hessian block), blocks in the given order.

    One record per block: `name`, `n_params`, `top_eig`, `top_eig_residual` (`‖H_b v − λ v‖`),
    `top_eig_converged` (Lanczos met `tol` within `max_iter`), and with `trace`: `trace`, `trace_stderr`,
    `trace_probes` (Hutchinson with `num_probes` Rademacher probes, as `hessian_trace`). A block of at most
    `exact_max_dim` parameters is measured exactly from its dense Hessian (`block_hessian`): residual of the
    dense eigenpair, `converged` true, `trace_stderr` 0 and `trace_probes` 0. The model is left as it was.
    """
    check_int("exact_max_dim", exact_max_dim, 0)
    out = []
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    for name, names in model_blocks(model, blocks).items():
        n_params = sum(sizes[n] for n in names)
        if n_params <= exact_max_dim:
            out.append({"name": name, "n_params": n_params, **_exact(model, data, names, loss_fn, mode, trace)})
            continue
        eigs, info = hessian_eigenvalues(
            model, data, k=1, tol=tol, max_iter=max_iter, seed=seed, return_info=True, loss_fn=loss_fn,
            param_filter=block_filter(names), mode=mode,
        )  # fmt: skip
        rec = {"name": name, "n_params": n_params, "top_eig": eigs[0]}
        rec |= {"top_eig_residual": info["residuals"][0], "top_eig_converged": info["converged"]}
        if trace:
            mean, stderr = hessian_trace(
                model, data, num_probes=num_probes, probes_per_pass=probes_per_pass, seed=seed, loss_fn=loss_fn,
                param_filter=block_filter(names), mode=mode,
            )  # fmt: skip
            rec |= {"trace": mean, "trace_stderr": stderr, "trace_probes": num_probes}
        out.append(rec)
    return out


def _exact(model: nn.Module, data: Data, names: list[str], loss_fn: LossFn, mode: str, trace: bool) -> dict:
    H = block_hessian(model, data, names, loss_fn=loss_fn, mode=mode).double()
    vals, vecs = torch.linalg.eigh(H)
    lam, v = float(vals[-1]), vecs[:, -1]
    rec = {"top_eig": lam, "top_eig_residual": float((H @ v - lam * v).norm()), "top_eig_converged": True}
    if trace:
        rec |= {"trace": float(H.diagonal().sum()), "trace_stderr": 0.0, "trace_probes": 0}
    return rec


def concentration(records: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Depth-comparable summaries of one model's block records (`block_curvature`):

    `first_trace_fraction` / `last_trace_fraction`: the first / last block's share of the summed block traces
    (the block traces add up to the full trace, so these are shares of it); `sharpest_position`: where the block
    with the largest top eigenvalue sits, 0 = first block, 1 = last (one block: 0). None where a value is missing.
    """
    traces = [r.get("trace") for r in records]
    eigs = [r.get("top_eig") for r in records]
    ok = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
    total = sum(traces) if traces and all(map(ok, traces)) else None
    share = (lambda v: v / total) if total else (lambda v: None)
    out: dict[str, float | None] = {
        "first_trace_fraction": share(traces[0]) if traces else None,
        "last_trace_fraction": share(traces[-1]) if traces else None,
        "sharpest_position": None,
    }
    if eigs and all(map(ok, eigs)):
        top = max(range(len(eigs)), key=eigs.__getitem__)
        out["sharpest_position"] = top / (len(eigs) - 1) if len(eigs) > 1 else 0.0
    return out

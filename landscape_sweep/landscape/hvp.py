"""Exact Hessian-vector products of the mean loss over a whole data set, on the flat parameter vector.

`HessianOperator` is the engine under `hessian.py` and `sharpness.py`: it fixes the selected parameters
`w` (flattened in `select_params` order) and the frozen rest of the model state, and answers `H v` for
one vector (`matvec`) or for a stack of vectors in one data pass (`matmat`, vmapped). One product is one
pass over `data`; batch results are weighted by batch size, so `H` is the Hessian of the mean loss over
all samples whatever the batching.

Two exact methods: "rev-rev" (double backward with `torch.autograd.grad`, the default) and "fwd-rev"
(`torch.func.jvp` of `torch.func.grad`, vmapped over probes). Measured on CPU (2 threads, 4000 samples in
batches of 1000, min of 5): mnist1d MLP 40-256-256-10 (79k params) 37 vs 46 ms per product, 203 vs 252 ms
for 8 probes in one pass; BN CNN (12k params) 105 vs 129 ms, 607 vs 1999 ms for 8 probes (vmapped conv
is slow). "rev-rev" serves a stack of probes by reusing one gradient graph per batch
(`retain_graph`), which beat `is_grads_batched` (235 / 1423 ms). Train-mode BatchNorm updates running
statistics in place, which the functorch transforms refuse, so train-mode BN always uses "rev-rev".

Build the operator inside `_core.preserved(model, mode)` (the public functions do): it runs the model
functionally and never writes to it, but train-mode BN still touches the running statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vmap

from landscape_sweep.checks import check_choice  # also re-exported: `from .hvp import check_choice` still works

from ._core import (
    Data,
    LossFn,
    ParamFilter,
    batches,
    check_finite,
    default_loss,
    flatten,
    frozen_state,
    functional_loss,
    iter_batches,
    model_device,
    preserved,
    select_params,
    unflatten_like,
)

HVP_METHODS = ("fwd-rev", "rev-rev")
MODES = ("eval", "train")


class HessianOperator:
    """`H v` for the Hessian of the mean loss over `data` w.r.t. the selected parameters (flattened).

    Attributes: `w` (flat selected parameters, detached), `dim`, `like` (name -> tensor, the layout of
    `w`), `loss0` (mean loss at `w`, checked finite). Use inside `preserved(model, mode)`.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Data,
        loss_fn: LossFn = default_loss,
        param_filter: ParamFilter | None = None,
        method: str = "rev-rev",
    ) -> None:
        check_choice("method", method, HVP_METHODS)
        self.model, self.loss_fn, self.data = model, loss_fn, batches(data)
        self.like = select_params(model, param_filter)
        self.frozen = frozen_state(model, self.like)
        self.w = flatten(self.like).detach()
        self.dim = self.w.numel()
        self.device, self.dtype = model_device(model), self.w.dtype
        bn_train = any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())
        self.method = "rev-rev" if bn_train else method
        self.loss0 = check_finite(self.loss(), "loss")

    def batches(self):
        """Data batches on the model's device; floating inputs cast to the parameter dtype."""
        for x, y in iter_batches(self.data, self.device):
            yield (x.to(self.dtype) if x.is_floating_point() else x), y

    def batch_loss(self, flat: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Mean loss on one batch at the flat parameter vector `flat`."""
        return functional_loss(self.model, unflatten_like(flat, self.like), self.frozen, x, y, self.loss_fn)

    @torch.no_grad()
    def loss(self, flat: Tensor | None = None) -> float:
        """Mean loss over all samples at `flat` (default: `w`)."""
        flat = self.w if flat is None else flat
        total, n = 0.0, 0
        for x, y in self.batches():
            total += float(self.batch_loss(flat, x, y)) * len(y)
            n += len(y)
        return total / n

    def loss_and_grad(self, flat: Tensor | None = None) -> tuple[float, Tensor]:
        """Mean loss and its gradient (flat) at `flat` (default: `w`), one pass."""
        flat = (self.w if flat is None else flat).detach()
        total, g, n = 0.0, torch.zeros_like(flat), 0
        for x, y in self.batches():
            p = flat.clone().requires_grad_(True)
            with torch.enable_grad():
                loss = self.batch_loss(p, x, y)
                (gb,) = torch.autograd.grad(loss, p)
            total += float(loss.detach()) * len(y)
            g += gb * len(y)
            n += len(y)
        return total / n, g / n

    def matvec(self, v: Tensor) -> Tensor:
        """`H v` for one flat vector `v` (one data pass)."""
        return self.matmat(v.unsqueeze(0))[0]

    def matmat(self, vs: Tensor) -> Tensor:
        """`H v_i` for each row of `vs` (shape `(p, dim)`), all rows in the same data pass."""
        if vs.ndim != 2 or vs.shape[1] != self.dim:
            raise ValueError(f"vs: got shape {tuple(vs.shape)}; expected (p, {self.dim})")
        vs = vs.to(self.device, self.dtype)
        out, n = torch.zeros_like(vs), 0
        for x, y in self.batches():
            out += self._batch_hvp(x, y, vs) * len(y)
            n += len(y)
        return out / n

    def _batch_hvp(self, x: Tensor, y: Tensor, vs: Tensor) -> Tensor:
        if self.method == "fwd-rev":
            g = grad(lambda p: self.batch_loss(p, x, y))
            one = lambda t: jvp(g, (self.w,), (t,))[1]  # noqa: E731
            return one(vs[0]).unsqueeze(0) if len(vs) == 1 else vmap(one)(vs)
        p = self.w.clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.batch_loss(p, x, y), p, create_graph=True)
            if len(vs) == 1:
                return torch.autograd.grad(g, p, vs[0])[0].unsqueeze(0)
            return torch.stack([torch.autograd.grad(g, p, v, retain_graph=True)[0] for v in vs])


def hvp(
    model: nn.Module,
    data: Data,
    v: Tensor | dict[str, Tensor],
    loss_fn: LossFn = default_loss,
    param_filter: ParamFilter | None = None,
    mode: str = "eval",
    method: str = "rev-rev",
) -> Tensor:
    """Hessian-vector product `H v` of the mean loss over `data` (flat; `v` flat or a name -> tensor dict).

    `v` is laid out like the selected parameters (`select_params(model, param_filter)` order). The model
    is left exactly as it was.
    """
    check_choice("mode", mode, MODES)
    with preserved(model, mode):
        op = HessianOperator(model, data, loss_fn, param_filter, method)
        flat = flatten({k: v[k] for k in op.like}) if isinstance(v, dict) else v
        if flat.numel() != op.dim:
            raise ValueError(f"v: got {flat.numel()} entries; the selected parameters have {op.dim}")
        return op.matvec(flat.reshape(-1)).detach()


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A local generator (never the global RNG): same seed, same draws."""
    return torch.Generator(device=device).manual_seed(int(seed))


def rademacher(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    """±1 entries drawn on the CPU (device-independent draws), returned on `like`'s device and dtype."""
    r = torch.randint(0, 2, shape, generator=gen, dtype=torch.int8)
    return (r.to(like.dtype) * 2 - 1).to(like.device)

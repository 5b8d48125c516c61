"""SAM (Foret et al. 2021) and ASAM (Kwon et al. 2021) as a torch optimizer wrapping any base optimizer.

One `step(closure)`: gradient g at w (first closure call), ascent to w + e with
`e = rho * g / ||g||` (ASAM: `e = rho * w^2 g / || |w| g ||`), gradient at w + e (second call),
back to w, then the base optimizer's step with that gradient. The closure zeroes the grads, runs
forward + backward and returns the loss (as for LBFGS). param_groups and state are shared with the
base optimizer, so LR schedulers, state_dict and load_state_dict work unchanged.

BatchNorm: wrap the second forward in `frozen_bn_stats(model)` so running statistics are updated by
the first pass only (the LightningModule does this).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from landscape_sweep.training.bases import BASES


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation around a base optimizer (`base`: a name of `bases.BASES` or a class).

    `rho` is the radius of the ascent step, `adaptive=True` gives ASAM; `base_kwargs` go to the base
    optimizer (lr, momentum, weight_decay, ...). Per-group `rho`/`adaptive` are honoured; the norm is
    taken over all groups together.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base: str | type[torch.optim.Optimizer] = "sgd",
        rho: float = 0.05,
        adaptive: bool = False,
        **base_kwargs: Any,
    ) -> None:
        if isinstance(base, str):
            if base not in BASES:
                raise ValueError(f"base={base!r}: must be one of {', '.join(BASES)} or an optimizer class")
            base = BASES[base].cls
        if not (isinstance(rho, (int, float)) and torch.isfinite(torch.tensor(float(rho))) and rho > 0):
            raise ValueError(f"rho={rho!r}: must be a finite number > 0")
        super().__init__(params, {"rho": rho, "adaptive": bool(adaptive), **base_kwargs})
        self.base = base(self.param_groups, **base_kwargs)
        self._share()

    def _share(self) -> None:
        """Alias groups, state and defaults with the base optimizer (one source of truth)."""
        self.param_groups = self.base.param_groups
        self.state = self.base.state
        self.defaults.update(self.base.defaults)

    @torch.no_grad()
    def _ascent(self) -> list[tuple[Tensor, Tensor]]:
        """Move every parameter with a gradient to w + e; return (param, copy of w) pairs.

        w is restored by copy, not by subtracting e: `(w + e) - e != w` in floating point.
        """
        scaled = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    g = p.abs() * p.grad if group["adaptive"] else p.grad
                    scaled.append(g.norm(dtype=torch.promote_types(g.dtype, torch.float32)))
        if not scaled:
            return []
        norm = torch.stack(scaled).norm()
        norm = norm.clamp_min(torch.finfo(norm.dtype).tiny)  # zero gradient: e = 0, not NaN
        moves = []
        for group in self.param_groups:
            scale = group["rho"] / norm
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = (p * p * p.grad if group["adaptive"] else p.grad) * scale.to(p.dtype)
                moves.append((p, p.clone()))
                p.add_(e)
        return moves

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One SAM step; `closure` (zero grads, forward, backward, return loss) is called twice.

        Returns the loss at w (the first call). If the second call raises, the weights are restored to w.
        """
        if closure is None:
            raise ValueError("closure=None: SAM.step needs a closure (zero grads, forward, backward, return loss)")
        closure = torch.enable_grad()(closure)
        loss = closure()
        moves = self._ascent()
        try:
            closure()
        finally:
            for p, w in moves:
                p.copy_(w)
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the base optimizer (its rules for casting state) and re-share groups and state."""
        self.base.load_state_dict(state_dict)
        self._share()


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[nn.Module]:
    """BatchNorm layers normalise with batch statistics (train mode) but keep their running stats.

    Momentum is set to 0.0 (not None: None means a cumulative average) and `num_batches_tracked`
    is restored, so the block leaves every BN buffer exactly as it found it.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in bns]
    try:
        for m in bns:
            m.momentum = 0.0
        yield model
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)

"""The base optimizers a config may name (`optimizer.base`), one entry each: the one list of them.

`training/optim.py` validates `optimizer.base` against it and builds the optimizer from it, `training/sam.py` wraps
any of them by name, and the memory pre-check (`pipeline/prechecks.py`) counts the state each keeps. A new base is
one entry here (plus, for settings no preset has yet, their defaults in `conf/optimizer/sgd.yaml`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class BaseOptimizer:
    """A torch optimizer class, the `optimizer.*` settings it takes besides `lr` and `weight_decay` (lists become
    tuples), and how many parameter-sized state tensors it keeps for a resolved config (memory pre-check)."""

    cls: type[torch.optim.Optimizer]
    settings: tuple[str, ...]
    state: Callable[[Mapping[str, Any]], int]

    def kwargs(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor's keyword arguments from a resolved optimizer config."""
        own = {k: tuple(cfg[k]) if isinstance(cfg[k], list) else cfg[k] for k in self.settings}
        return {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"], **own}


BASES: dict[str, BaseOptimizer] = {
    "sgd": BaseOptimizer(torch.optim.SGD, ("momentum", "nesterov"), lambda c: int(c["momentum"] > 0)),
    "adam": BaseOptimizer(torch.optim.Adam, ("betas", "eps"), lambda c: 2),
    "adamw": BaseOptimizer(torch.optim.AdamW, ("betas", "eps"), lambda c: 2),
}

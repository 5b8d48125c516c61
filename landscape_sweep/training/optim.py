"""Optimizer config: validation, the torch optimizer, the per-step LR schedule and the cell's optimizer label.

The config is the flat mapping of `conf/optimizer/<name>.yaml` (a dict or an OmegaConf DictConfig).
Missing keys take the `sgd` preset's values, unknown keys are refused. Every schedule here is *per
optimizer step*: the LightningModule calls `scheduler.step()` after each step, so the LR used by step
`s` is `lr * factor(s)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

BASES = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
ANNEAL_STRATEGIES = ("cos", "linear")
FP16_PRECISIONS = ("16", "16-mixed")  # GradScaler steps without a closure: SAM cannot run under it

DEFAULTS: dict[str, Any] = {
    "name": "sgd",
    "base": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5.0e-4,
    "betas": [0.9, 0.999],
    "eps": 1.0e-8,
    "rho": None,
    "adaptive": False,
    "grad_clip": None,
    "schedule": {"name": "cosine", "warmup_epochs": 0, "step_epochs": [], "gamma": 0.1, "min_lr": 0.0},
    "swa": {"enabled": False, "start": 0.75, "lr": 0.01, "anneal_epochs": 1, "anneal_strategy": "cos"},
}


def _plain(x: Any) -> Any:
    """DictConfig/ListConfig/tuples -> plain dicts and lists (recursively)."""
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, Sequence) and not isinstance(x, str):
        return [_plain(v) for v in x]
    return x


def resolve_cfg(optim_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config as a plain dict with every key present (defaults from the `sgd` preset)."""
    if not isinstance(optim_cfg, Mapping):
        raise ValueError(f"optimizer={optim_cfg!r}: must be a mapping of optimizer settings")
    cfg = _plain(optim_cfg)
    for key in cfg:
        if key not in DEFAULTS:
            raise ValueError(f"optimizer.{key}: unknown key; allowed: {', '.join(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    for sub in ("schedule", "swa"):
        if not isinstance(out[sub], Mapping):
            raise ValueError(f"optimizer.{sub}={out[sub]!r}: must be a mapping")
        for key in out[sub]:
            if key not in DEFAULTS[sub]:
                raise ValueError(f"optimizer.{sub}.{key}: unknown key; allowed: {', '.join(DEFAULTS[sub])}")
        out[sub] = {**DEFAULTS[sub], **out[sub]}
    return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ValueError(f"optimizer.{key}={value!r}: {allowed}")


def _positive(cfg: Mapping[str, Any], key: str, prefix: str = "", optional: bool = False) -> None:
    v = cfg[key]
    if optional and v is None:
        return
    if not (_is_num(v) and v > 0):
        _fail(prefix + key, v, "must be a finite number > 0" + (" or null" if optional else ""))


def validate_optimizer_cfg(
    optim_cfg: Mapping[str, Any], *, max_epochs: int, precision: str | int | None = None
) -> None:
    """Check every optimizer setting; raise a one-line ValueError naming the key, the value and what is allowed.

    `precision` (the Trainer's) is optional: SAM is refused under fp16 mixed precision (its GradScaler
    steps the optimizer without a closure, SAM needs two closure evaluations per step).
    """
    if not (_is_int(max_epochs) and max_epochs >= 1):
        raise ValueError(f"max_epochs={max_epochs!r}: must be an integer >= 1")
    cfg = resolve_cfg(optim_cfg)
    if not (isinstance(cfg["name"], str) and cfg["name"]):
        _fail("name", cfg["name"], "must be a non-empty string (the preset's name)")
    if cfg["base"] not in BASES:
        _fail("base", cfg["base"], f"must be one of {', '.join(BASES)}")
    _positive(cfg, "lr")
    if not (_is_num(cfg["momentum"]) and 0 <= cfg["momentum"] < 1):
        _fail("momentum", cfg["momentum"], "must be a number in [0, 1)")
    for key in ("nesterov", "adaptive"):
        if not isinstance(cfg[key], bool):
            _fail(key, cfg[key], "must be true or false")
    if cfg["nesterov"] and cfg["base"] == "sgd" and cfg["momentum"] == 0:
        _fail("nesterov", True, "needs optimizer.momentum > 0")
    if not (_is_num(cfg["weight_decay"]) and cfg["weight_decay"] >= 0):
        _fail("weight_decay", cfg["weight_decay"], "must be a finite number >= 0")
    betas = cfg["betas"]
    if not (isinstance(betas, list) and len(betas) == 2 and all(_is_num(b) and 0 <= b < 1 for b in betas)):
        _fail("betas", betas, "must be two numbers in [0, 1)")
    _positive(cfg, "eps")
    _positive(cfg, "rho", optional=True)
    if cfg["adaptive"] and cfg["rho"] is None:
        _fail("adaptive", True, "ASAM needs optimizer.rho set (e.g. 0.5)")
    _positive(cfg, "grad_clip", optional=True)
    if cfg["rho"] is not None and precision is not None and str(precision) in FP16_PRECISIONS:
        _fail(
            "rho",
            cfg["rho"],
            f"SAM/ASAM cannot run with trainer precision={precision} (fp16 GradScaler); use bf16-mixed or 32",
        )

    s = cfg["schedule"]
    if s["name"] not in SCHEDULES:
        _fail("schedule.name", s["name"], f"must be one of {', '.join(SCHEDULES)}")
    if not (_is_int(s["warmup_epochs"]) and 0 <= s["warmup_epochs"] <= max_epochs):
        _fail("schedule.warmup_epochs", s["warmup_epochs"], f"must be an integer in [0, {max_epochs}]")
    steps = s["step_epochs"]
    if not (isinstance(steps, list) and all(_is_int(e) and 0 < e < max_epochs for e in steps)):
        _fail("schedule.step_epochs", steps, f"must be a list of epochs in [1, {max_epochs - 1}]")
    _positive(s, "gamma", "schedule.")
    if not (_is_num(s["min_lr"]) and 0 <= s["min_lr"] <= cfg["lr"]):
        _fail("schedule.min_lr", s["min_lr"], f"must be a number in [0, optimizer.lr={cfg['lr']}]")

    w = cfg["swa"]
    if not isinstance(w["enabled"], bool):
        _fail("swa.enabled", w["enabled"], "must be true or false")
    start = w["start"]
    if _is_int(start):
        if not 0 <= start < max_epochs:
            _fail("swa.start", start, f"must be an epoch in [0, {max_epochs - 1}] (max_epochs={max_epochs})")
    elif not (_is_num(start) and 0 <= start < 1):
        _fail("swa.start", start, "must be an epoch (int) < max_epochs or a fraction of max_epochs in [0, 1)")
    _positive(w, "lr", "swa.")
    if not (_is_int(w["anneal_epochs"]) and w["anneal_epochs"] >= 0):
        _fail("swa.anneal_epochs", w["anneal_epochs"], "must be an integer >= 0")
    if w["anneal_strategy"] not in ANNEAL_STRATEGIES:
        _fail("swa.anneal_strategy", w["anneal_strategy"], f"must be one of {', '.join(ANNEAL_STRATEGIES)}")


def swa_start_epoch(optim_cfg: Mapping[str, Any], *, max_epochs: int) -> int | None:
    """First epoch trained with the SWA LR (averaging happens at the end of it and of every later epoch).

    None when SWA is off. A fractional `swa.start` is `floor(start * max_epochs)`.
    """
    w = resolve_cfg(optim_cfg)["swa"]
    if not w["enabled"]:
        return None
    start = w["start"]
    return start if _is_int(start) else int(math.floor(start * max_epochs))


def optimizer_label(optim_cfg: Mapping[str, Any]) -> str:
    """The cell's optimizer name from the effective settings: sgd, adam, sam, asam, swa, sam+swa, adam+sam ..."""
    cfg = resolve_cfg(optim_cfg)
    sam = None if cfg["rho"] is None else ("asam" if cfg["adaptive"] else "sam")
    swa = "swa" if cfg["swa"]["enabled"] else None
    base = cfg["base"] if (cfg["base"] != "sgd" or not (sam or swa)) else None
    return "+".join(p for p in (base, sam, swa) if p)


def base_optimizer_kwargs(optim_cfg: Mapping[str, Any]) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The base optimizer's class and constructor kwargs."""
    cfg = resolve_cfg(optim_cfg)
    common = {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"]}
    if cfg["base"] == "sgd":
        return torch.optim.SGD, {**common, "momentum": cfg["momentum"], "nesterov": cfg["nesterov"]}
    cls = torch.optim.Adam if cfg["base"] == "adam" else torch.optim.AdamW
    return cls, {**common, "betas": tuple(cfg["betas"]), "eps": cfg["eps"]}


def build_optimizer(params: Iterable[Any], optim_cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The torch optimizer of the config: the base optimizer, wrapped in SAM/ASAM when `rho` is set."""
    from landscape_sweep.training.sam import SAM

    cfg = resolve_cfg(optim_cfg)
    cls, kwargs = base_optimizer_kwargs(cfg)
    if cfg["rho"] is None:
        return cls(params, **kwargs)
    return SAM(params, base=cls, rho=cfg["rho"], adaptive=cfg["adaptive"], **kwargs)


class LRFactor:
    """Per-step LR multiplier: linear warmup, then constant / cosine (to min_lr) / step decay.

    A plain object (not a lambda) so LambdaLR's state_dict can hold it and it can be unit-tested.
    Warmup uses `(s + 1) / warmup_steps` so the first step already moves; cosine and step count from
    the end of warmup and from epoch boundaries respectively.
    """

    def __init__(self, optim_cfg: Mapping[str, Any], *, max_epochs: int, steps_per_epoch: int) -> None:
        if not (_is_int(steps_per_epoch) and steps_per_epoch >= 1):
            raise ValueError(f"steps_per_epoch={steps_per_epoch!r}: must be an integer >= 1")
        cfg = resolve_cfg(optim_cfg)
        s = cfg["schedule"]
        self.kind = s["name"]
        self.total = max_epochs * steps_per_epoch
        self.warmup = s["warmup_epochs"] * steps_per_epoch
        self.milestones = sorted(e * steps_per_epoch for e in s["step_epochs"])
        self.gamma = float(s["gamma"])
        self.floor = float(s["min_lr"]) / float(cfg["lr"])

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "cosine":
            t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
            return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))
        if self.kind == "step":
            return self.gamma ** sum(step >= m for m in self.milestones)
        return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, optim_cfg: Mapping[str, Any], *, max_epochs: int, steps_per_epoch: int
) -> LRScheduler:
    """The base LR schedule as a per-step LambdaLR (SWA's SWALR takes over from `swa.start`, see swa.py)."""
    return LambdaLR(optimizer, LRFactor(optim_cfg, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch))

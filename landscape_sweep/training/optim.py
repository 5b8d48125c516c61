"""Optimizer config: validation, the torch optimizer, the per-step LR schedule and the cell's optimizer label.

The config is the flat mapping of `conf/optimizer/<name>.yaml` (a dict or an OmegaConf DictConfig).
Missing keys take the values of `conf/optimizer/sgd.yaml` (`DEFAULTS`, read from that file: the one full
preset, the others inherit it), unknown keys are refused. Every schedule here is *per optimizer step*: the
LightningModule calls `scheduler.step()` after each step, so the LR used by step `s` is `lr * factor(s)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from landscape_sweep import CONF_DIR
from landscape_sweep.checks import (
    check_choice,
    check_int,
    check_lr,
    check_number,
    check_positive,
    fail,
    is_int,
    is_number,
)
from landscape_sweep.training.bases import BASES
from landscape_sweep.training.sam import SAM

SCHEDULES = ("constant", "cosine", "step")
ANNEAL_STRATEGIES = ("cos", "linear")
FP16_PRECISIONS = ("16", "16-mixed")  # GradScaler steps without a closure: SAM cannot run under it
DEFAULTS_FILE = CONF_DIR / "optimizer" / "sgd.yaml"


def _load_defaults() -> dict[str, Any]:
    """Every optimizer key with its default: the `sgd` preset, which has no defaults list of its own."""
    cfg = OmegaConf.to_container(OmegaConf.load(DEFAULTS_FILE), resolve=True)
    if not isinstance(cfg, dict) or "defaults" in cfg:
        raise RuntimeError(f"{DEFAULTS_FILE}: must be the one full optimizer preset (no defaults list)")
    return cfg


DEFAULTS: dict[str, Any] = _load_defaults()


def _plain(x: Any) -> Any:
    """DictConfig/ListConfig/tuples -> plain dicts and lists (recursively)."""
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, Sequence) and not isinstance(x, str):
        return [_plain(v) for v in x]
    return x


def _check_known(cfg: Mapping[str, Any], allowed: Mapping[str, Any], prefix: str) -> None:
    for key in cfg:
        if key not in allowed:
            raise ValueError(f"{prefix}{key}: unknown key; allowed: {', '.join(allowed)}")


def resolve_cfg(optim_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config as a plain dict with every key present (defaults from the `sgd` preset)."""
    if not isinstance(optim_cfg, Mapping):
        fail("optimizer", optim_cfg, "must be a mapping of optimizer settings")
    cfg = _plain(optim_cfg)
    _check_known(cfg, DEFAULTS, "optimizer.")
    out = {**DEFAULTS, **cfg}
    for sub in ("schedule", "swa"):
        if not isinstance(out[sub], Mapping):
            fail(f"optimizer.{sub}", out[sub], "must be a mapping")
        _check_known(out[sub], DEFAULTS[sub], f"optimizer.{sub}.")
        out[sub] = {**DEFAULTS[sub], **out[sub]}
    return out


def _flag(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        fail(key, value, "must be true or false")


def _positive_or_null(key: str, value: Any) -> None:
    if value is not None and not (is_number(value) and value > 0):
        fail(key, value, "must be a finite number > 0 or null")


def validate_optimizer_cfg(
    optim_cfg: Mapping[str, Any], *, max_epochs: int, precision: str | int | None = None
) -> None:
    """Check every optimizer setting; raise a one-line ValueError naming the key, the value and what is allowed.

    `precision` (the Trainer's) is optional: SAM is refused under fp16 mixed precision (its GradScaler
    steps the optimizer without a closure, SAM needs two closure evaluations per step).
    """
    check_int("max_epochs", max_epochs)
    cfg = resolve_cfg(optim_cfg)
    _check_base(cfg)
    _check_sam(cfg, precision)
    _check_schedule(cfg["schedule"], lr=cfg["lr"], max_epochs=max_epochs)
    _check_swa(cfg["swa"], max_epochs=max_epochs)


def _check_base(cfg: Mapping[str, Any]) -> None:
    """The base optimizer's settings (name, base, lr, momentum, betas, ..., grad_clip)."""
    if not (isinstance(cfg["name"], str) and cfg["name"]):
        fail("optimizer.name", cfg["name"], "must be a non-empty string (the preset's name)")
    check_choice("optimizer.base", cfg["base"], BASES)
    check_lr("optimizer.lr", cfg["lr"])
    if not (is_number(cfg["momentum"]) and 0 <= cfg["momentum"] < 1):
        fail("optimizer.momentum", cfg["momentum"], "must be a number in [0, 1)")
    _flag("optimizer.nesterov", cfg["nesterov"])
    _flag("optimizer.adaptive", cfg["adaptive"])
    if cfg["nesterov"] and cfg["base"] == "sgd" and cfg["momentum"] == 0:
        fail("optimizer.nesterov", True, "needs optimizer.momentum > 0")
    check_number("optimizer.weight_decay", cfg["weight_decay"], 0)
    betas = cfg["betas"]
    if not (isinstance(betas, list) and len(betas) == 2 and all(is_number(b) and 0 <= b < 1 for b in betas)):
        fail("optimizer.betas", betas, "must be two numbers in [0, 1)")
    check_positive("optimizer.eps", cfg["eps"])
    _positive_or_null("optimizer.grad_clip", cfg["grad_clip"])


def _check_sam(cfg: Mapping[str, Any], precision: str | int | None) -> None:
    """SAM/ASAM: rho, adaptive, and no fp16 GradScaler."""
    rho = cfg["rho"]
    _positive_or_null("optimizer.rho", rho)
    if cfg["adaptive"] and rho is None:
        fail("optimizer.adaptive", True, "ASAM needs optimizer.rho set (e.g. 0.5)")
    if rho is not None and precision is not None and str(precision) in FP16_PRECISIONS:
        allowed = f"SAM/ASAM cannot run with trainer precision={precision} (fp16 GradScaler); use bf16-mixed or 32"
        fail("optimizer.rho", rho, allowed)


def _check_schedule(s: Mapping[str, Any], *, lr: float, max_epochs: int) -> None:
    """`optimizer.schedule.*` against the run's length and the base LR."""
    check_choice("optimizer.schedule.name", s["name"], SCHEDULES)
    check_int("optimizer.schedule.warmup_epochs", s["warmup_epochs"], 0, max_epochs)
    steps = s["step_epochs"]
    if not (isinstance(steps, list) and all(is_int(e) and 0 < e < max_epochs for e in steps)):
        fail("optimizer.schedule.step_epochs", steps, f"must be a list of epochs in [1, {max_epochs - 1}]")
    check_positive("optimizer.schedule.gamma", s["gamma"])
    if not (is_number(s["min_lr"]) and 0 <= s["min_lr"] <= lr):
        fail("optimizer.schedule.min_lr", s["min_lr"], f"must be a number in [0, optimizer.lr={lr}]")


def _check_swa(w: Mapping[str, Any], *, max_epochs: int) -> None:
    """`optimizer.swa.*`: start as an epoch or a fraction of the run, SWALR settings."""
    _flag("optimizer.swa.enabled", w["enabled"])
    start = w["start"]
    if is_int(start):
        if not 0 <= start < max_epochs:
            fail("optimizer.swa.start", start, f"must be an epoch in [0, {max_epochs - 1}] (max_epochs={max_epochs})")
    elif not (is_number(start) and 0 <= start < 1):
        fail("optimizer.swa.start", start, "must be an epoch (int) < max_epochs or a fraction of max_epochs in [0, 1)")
    check_lr("optimizer.swa.lr", w["lr"])
    check_int("optimizer.swa.anneal_epochs", w["anneal_epochs"], 0)
    check_choice("optimizer.swa.anneal_strategy", w["anneal_strategy"], ANNEAL_STRATEGIES)


def swa_start_epoch(optim_cfg: Mapping[str, Any], *, max_epochs: int) -> int | None:
    """First epoch trained with the SWA LR (averaging happens at the end of it and of every later epoch).

    None when SWA is off. A fractional `swa.start` is `floor(start * max_epochs)`.
    """
    w = resolve_cfg(optim_cfg)["swa"]
    if not w["enabled"]:
        return None
    start = w["start"]
    return start if is_int(start) else int(math.floor(start * max_epochs))


def optimizer_label(optim_cfg: Mapping[str, Any]) -> str:
    """The cell's optimizer name from the effective settings: sgd, adam, sam, asam, swa, sam+swa, adam+sam ..."""
    cfg = resolve_cfg(optim_cfg)
    sam = None if cfg["rho"] is None else ("asam" if cfg["adaptive"] else "sam")
    swa = "swa" if cfg["swa"]["enabled"] else None
    base = cfg["base"] if (cfg["base"] != "sgd" or not (sam or swa)) else None
    return "+".join(p for p in (base, sam, swa) if p)


def base_optimizer_kwargs(optim_cfg: Mapping[str, Any]) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The base optimizer's class and constructor kwargs (its `bases.BASES` entry)."""
    cfg = resolve_cfg(optim_cfg)
    base = BASES[cfg["base"]]
    return base.cls, base.kwargs(cfg)


def build_optimizer(params: Iterable[Any], optim_cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The torch optimizer of the config: the base optimizer, wrapped in SAM/ASAM when `rho` is set."""
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
        check_int("steps_per_epoch", steps_per_epoch)
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

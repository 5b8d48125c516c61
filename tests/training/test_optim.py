import math

import pytest
import torch
from omegaconf import OmegaConf

from landscape_sweep.pipeline.config import CONF_DIR, validate
from landscape_sweep.training.optim import (
    DEFAULTS,
    LRFactor,
    build_optimizer,
    build_scheduler,
    optimizer_label,
    resolve_cfg,
    swa_start_epoch,
    validate_optimizer_cfg,
)
from landscape_sweep.training.sam import SAM

CONF = CONF_DIR / "optimizer"


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"rho": -0.1}, "optimizer.rho=-0.1: must be a finite number > 0 or null"),
        ({"rho": 0}, "optimizer.rho=0: must be a finite number > 0 or null"),
        ({"rho": float("nan")}, "optimizer.rho=nan: must be a finite number > 0 or null"),
        ({"rho": float("inf")}, "optimizer.rho=inf: must be a finite number > 0 or null"),
        ({"swa": {"start": 10}}, "optimizer.swa.start=10: must be an epoch in [0, 9] (max_epochs=10)"),
        ({"swa": {"start": 1.5}}, "optimizer.swa.start=1.5: must be an epoch (int) < max_epochs or a fraction"),
        ({"swa": {"lr": 0.0}}, "optimizer.swa.lr=0.0: must be a finite number > 0"),
        ({"swa": {"lr": -1}}, "optimizer.swa.lr=-1: must be a finite number > 0"),
        ({"swa": {"anneal_strategy": "exp"}}, "optimizer.swa.anneal_strategy='exp': must be one of cos, linear"),
        ({"base": "rmsprop"}, "optimizer.base='rmsprop': must be one of sgd, adam, adamw"),
        ({"schedule": {"name": "linear"}}, "optimizer.schedule.name='linear': must be one of constant, cosine, step"),
        ({"schedule": {"step_epochs": [10]}}, "optimizer.schedule.step_epochs=[10]: must be a list of epochs"),
        ({"schedule": {"min_lr": 1.0}}, "optimizer.schedule.min_lr=1.0: must be a number in [0, optimizer.lr=0.05]"),
        ({"lr": 0}, "optimizer.lr=0: must be a finite number > 0"),
        ({"lr": -0.1}, "optimizer.lr=-0.1: must be a finite number > 0"),
        ({"momentum": 1.0}, "optimizer.momentum=1.0: must be a number in [0, 1)"),
        ({"adaptive": True}, "optimizer.adaptive=True: ASAM needs optimizer.rho set"),
        ({"grad_clip": 0}, "optimizer.grad_clip=0: must be a finite number > 0 or null"),
        ({"lrr": 0.1}, "optimizer.lrr: unknown key; allowed: name, base, lr"),
        ({"swa": {"begin": 3}}, "optimizer.swa.begin: unknown key; allowed: enabled, start"),
    ],
)
def test_bad_config_is_a_one_line_value_error(cfg, message):
    with pytest.raises(ValueError) as err:
        validate_optimizer_cfg(cfg, max_epochs=10)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_fp16_refused_for_sam_only():
    with pytest.raises(ValueError, match=r"^optimizer.rho=0.05: SAM/ASAM cannot run with trainer precision=16-mixed"):
        validate_optimizer_cfg({"rho": 0.05}, max_epochs=3, precision="16-mixed")
    validate_optimizer_cfg({}, max_epochs=3, precision="16-mixed")
    validate_optimizer_cfg({"rho": 0.05}, max_epochs=3, precision="bf16-mixed")


def test_bad_max_epochs_and_steps():
    with pytest.raises(ValueError, match=r"^max_epochs=0: must be an integer >= 1"):
        validate_optimizer_cfg({}, max_epochs=0)
    with pytest.raises(ValueError, match=r"^steps_per_epoch=0: must be an integer >= 1"):
        LRFactor({}, max_epochs=2, steps_per_epoch=0)


# conf/optimizer/sgd.yaml as it composes: every key, in this order
SGD = {
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
# every preset is sgd plus these settings (the values each preset had when it was a full file), and its label
PRESETS = {
    "sgd": ({}, "sgd"),
    "adam": ({"name": "adam", "base": "adam", "lr": 1.0e-3, "weight_decay": 0.0}, "adam"),
    "adamw": ({"name": "adamw", "base": "adamw", "lr": 1.0e-3, "weight_decay": 1.0e-2}, "adamw"),
    "sam": ({"name": "sam", "rho": 0.05}, "sam"),
    "asam": ({"name": "asam", "rho": 0.5, "adaptive": True}, "asam"),
    "swa": ({"name": "swa", "swa": {**SGD["swa"], "enabled": True}}, "swa"),
    "sam_swa": ({"name": "sam_swa", "rho": 0.05, "swa": {**SGD["swa"], "enabled": True}}, "sam+swa"),
}


def test_defaults_are_the_sgd_preset_file():
    assert DEFAULTS == SGD and list(DEFAULTS) == list(SGD)
    assert OmegaConf.to_container(OmegaConf.load(CONF / "sgd.yaml")) == DEFAULTS
    assert resolve_cfg({}) == SGD


def test_every_preset_file_is_listed_and_inherits_sgd():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == sorted(PRESETS)
    for name in set(PRESETS) - {"sgd"}:
        raw = OmegaConf.load(CONF / f"{name}.yaml")
        assert raw.defaults[-1] == "_self_" and raw.defaults[0] in PRESETS, name
        assert len(raw) < 6, f"{name}.yaml: only the differences from its parent preset"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_composes_to_sgd_plus_its_differences(compose_cfg, name):
    cfg = compose_cfg([f"optimizer={name}"])
    composed = OmegaConf.to_container(cfg.optimizer)
    diff, label = PRESETS[name]
    assert composed == {**SGD, **diff} and list(composed) == list(SGD)
    validate(cfg)
    assert optimizer_label(cfg.optimizer) == label


def test_labels_of_combinations():
    assert optimizer_label({"rho": 0.05, "base": "adam"}) == "adam+sam"
    assert optimizer_label({"base": "adamw", "swa": {"enabled": True}}) == "adamw+swa"
    assert optimizer_label({"rho": 0.5, "adaptive": True, "swa": {"enabled": True}}) == "asam+swa"


def test_swa_start_epoch():
    assert swa_start_epoch({}, max_epochs=10) is None
    assert swa_start_epoch({"swa": {"enabled": True, "start": 0.75}}, max_epochs=10) == 7
    assert swa_start_epoch({"swa": {"enabled": True, "start": 3}}, max_epochs=10) == 3


def test_build_optimizer_settings():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = build_optimizer(params, {"lr": 0.1, "momentum": 0.5, "nesterov": True, "weight_decay": 0.01})
    assert type(sgd) is torch.optim.SGD
    g = sgd.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.1, 0.5, True, 0.01)
    adamw = build_optimizer(params, {"base": "adamw", "lr": 1e-3, "betas": [0.8, 0.9], "eps": 1e-6})
    assert type(adamw) is torch.optim.AdamW
    assert adamw.param_groups[0]["betas"] == (0.8, 0.9) and adamw.param_groups[0]["eps"] == 1e-6
    sam = build_optimizer(params, {"base": "adam", "rho": 0.1, "adaptive": True, "lr": 1e-3})
    assert isinstance(sam, SAM) and type(sam.base) is torch.optim.Adam
    assert sam.param_groups[0]["rho"] == 0.1 and sam.param_groups[0]["adaptive"] is True


def _lrs(cfg, max_epochs, steps_per_epoch):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg["lr"])
    sched = build_scheduler(opt, cfg, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch)
    out = []
    for _ in range(max_epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_give_the_expected_lrs():
    const = {"lr": 0.1, "schedule": {"name": "constant"}}
    assert _lrs(const, 2, 3) == pytest.approx([0.1] * 6, abs=0, rel=1e-15)
    warm = {"lr": 0.1, "schedule": {"name": "constant", "warmup_epochs": 1}}
    assert _lrs(warm, 2, 4) == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.1], rel=1e-15)
    step = {"lr": 1.0, "schedule": {"name": "step", "step_epochs": [1, 2], "gamma": 0.5}}
    assert _lrs(step, 3, 2) == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25], rel=1e-15)
    cos = {"lr": 1.0, "schedule": {"name": "cosine", "min_lr": 0.2}}
    expected = [0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert _lrs(cos, 2, 2) == pytest.approx(expected, rel=1e-15)
    cos_warm = {"lr": 1.0, "schedule": {"name": "cosine", "warmup_epochs": 1}}
    assert _lrs(cos_warm, 3, 2) == pytest.approx(
        [0.5, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))], rel=1e-14
    )

import copy
import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.precision import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from landscape_sweep.data import TensorLoader
from landscape_sweep.training.module import EpochAsBatch, LitClassifier

N, BATCH, STEPS = 32, 8, 4  # 4 optimizer steps per epoch


def _data(dtype=torch.float64, nan=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g, dtype=dtype)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    if nan:
        x[0, 0] = float("nan")
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def _model(bn=False, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(4, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.ReLU(), nn.Linear(8, 2)]
    return nn.Sequential(*layers).to(dtype)


def _trainer(max_epochs=2, **kw):
    opts = dict(
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    return pl.Trainer(**{**opts, **kw})


def _module(model, cfg, max_epochs=2, **kw):
    return LitClassifier(model, cfg, max_epochs=max_epochs, steps_per_epoch=STEPS, **kw)


class LRs(Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_metrics_are_logged_under_the_prefix_and_are_right():
    dl = _data()
    module = _module(_model(), {"lr": 0.1}, log_prefix="seed0/")
    trainer = _trainer()
    trainer.fit(module, dl, dl)
    keys = {"train/loss", "train/acc", "val/loss", "val/acc", "lr"}
    assert set(trainer.callback_metrics) == {f"seed0/{k}" for k in keys}
    trainer.test(module, dl, verbose=False)
    assert set(trainer.callback_metrics) == {"seed0/test/loss", "seed0/test/acc"}
    with torch.no_grad():
        x, y = dl.dataset.tensors
        logits = module.model(x)
    m = trainer.callback_metrics
    assert float(m["seed0/test/loss"]) == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-6)
    assert float(m["seed0/test/acc"]) == pytest.approx(float((logits.argmax(-1) == y).double().mean()))


@pytest.mark.parametrize("cfg", [{}, {"rho": 0.05}, {"rho": 0.5, "adaptive": True}])
def test_global_step_counts_one_per_batch(cfg):
    trainer = _trainer(max_epochs=3)
    trainer.fit(_module(_model(), cfg, max_epochs=3), _data())
    assert trainer.global_step == 3 * STEPS
    trainer = _trainer(max_epochs=3, max_steps=5)
    trainer.fit(_module(_model(), cfg, max_epochs=3), _data())
    assert trainer.global_step == 5


def test_nan_input_diverges_at_the_end_of_its_epoch():
    # the epoch's loss is checked once (no host sync per step): the run stops after the epoch that went non-finite
    module = _module(_model(), {"rho": 0.05})
    trainer = _trainer(max_epochs=3)
    trainer.fit(module, _data(nan=True))
    assert module.diverged and trainer.should_stop and trainer.global_step == STEPS
    assert "train/loss" not in trainer.callback_metrics  # a non-finite epoch is not logged


def test_huge_lr_diverges_and_stops():
    """The largest learning rate the config allows (1e4) diverges in float32 and stops at an epoch end."""
    module = _module(_model(dtype=torch.float32), {"lr": 1e4, "schedule": {"name": "constant"}}, max_epochs=20)
    trainer = _trainer(max_epochs=20)
    trainer.fit(module, _data(dtype=torch.float32))
    assert module.diverged and trainer.global_step < 20 * STEPS and trainer.global_step % STEPS == 0


def _tensor_loader(dtype=torch.float64):
    x, y = _data(dtype).dataset.tensors
    return TensorLoader(x, y, batch_size=BATCH, shuffle=True, seed=3)


@pytest.mark.parametrize(
    "cfg",
    [{}, {"rho": 0.05}, {"rho": 0.5, "adaptive": True, "base": "adamw", "lr": 1e-2}, {"swa": {"enabled": True}},
     {"grad_clip": 0.1}],
    ids=["sgd", "sam", "asam_adamw", "swa", "clip"],
)  # fmt: skip
def test_epoch_as_batch_trains_exactly_like_one_lightning_batch_per_step(cfg):
    # what a cell runs (one Lightning batch per epoch) == the plain per-minibatch loop: same steps, weights, metrics
    runs = []
    for wrap in (lambda dl: dl, EpochAsBatch):
        module = _module(_model(bn=True), cfg, max_epochs=3)
        trainer = _trainer(max_epochs=3)
        trainer.fit(module, wrap(_tensor_loader()))
        runs.append((module, trainer))
    (plain, t0), (epochs, t1) = runs
    assert t0.global_step == t1.global_step == 3 * STEPS
    for (k, a), b in zip(plain.model.state_dict().items(), epochs.model.state_dict().values()):
        assert torch.equal(a, b), k
    for key in ("train/loss", "train/acc", "lr"):
        assert float(t0.callback_metrics[key]) == float(t1.callback_metrics[key])


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ({"name": "constant", "warmup_epochs": 1}, [0.025, 0.05, 0.075, 0.1] + [0.1] * 8),
        ({"name": "step", "step_epochs": [1, 2], "gamma": 0.1}, [0.1] * 4 + [0.01] * 4 + [0.001] * 4),
        ({"name": "cosine"}, [0.05 * (1 + math.cos(math.pi * s / 12)) for s in range(12)]),
    ],
)
def test_module_steps_the_schedule_every_optimizer_step(schedule, expected):
    lrs = LRs()
    trainer = _trainer(max_epochs=3, callbacks=[lrs])
    trainer.fit(_module(_model(), {"lr": 0.1, "rho": 0.05, "schedule": schedule}, max_epochs=3), _data())
    assert lrs.lrs == pytest.approx(expected, rel=1e-12)


def test_grad_clip_bounds_the_step():
    model = _model()
    w0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    cfg = {"lr": 1.0, "momentum": 0.0, "weight_decay": 0.0, "grad_clip": 1e-3, "schedule": {"name": "constant"}}
    _trainer(max_steps=1).fit(_module(model, cfg), _data())
    w1 = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float((w1 - w0).norm()) == pytest.approx(1e-3, rel=1e-5)  # torch clips to max/(norm + 1e-6)


def test_sam_step_in_the_module_updates_bn_stats_once():
    model = _model(bn=True)
    reference = copy.deepcopy(model)
    x, _ = next(iter(_data()))
    reference(x)  # one plain training-mode forward on the first batch
    _trainer(max_steps=1).fit(_module(model, {"rho": 0.5, "adaptive": True}), _data())
    bn, ref = model[1], reference[1]
    assert torch.equal(bn.running_mean, ref.running_mean) and torch.equal(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == 1


@pytest.mark.parametrize("cfg", [{}, {"rho": 0.05}])
def test_bf16_mixed_runs(cfg):
    module = _module(_model(bn=True, dtype=torch.float32), cfg)
    trainer = _trainer(precision="bf16-mixed")
    trainer.fit(module, _data(dtype=torch.float32))
    assert trainer.global_step == 2 * STEPS and not module.diverged
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_fp16_with_sam_is_refused():
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    trainer = _trainer(plugins=[plugin])
    with pytest.raises(ValueError, match=r"^optimizer.rho=0.05: SAM/ASAM cannot run with trainer precision=16-mixed"):
        trainer.fit(_module(_model(dtype=torch.float32), {"rho": 0.05}), _data(dtype=torch.float32))


@pytest.mark.parametrize(
    "cfg",
    [
        {"base": "sgd"},
        {"rho": 0.05},
        {"rho": 0.5, "adaptive": True, "base": "adam", "lr": 1e-2},
        {"swa": {"enabled": True, "start": 2}},
        {"rho": 0.05, "swa": {"enabled": True, "start": 0.5, "anneal_epochs": 2}},
    ],
    ids=["sgd", "sam", "asam_adam", "swa", "sam_swa"],
)
def test_resume_from_a_mid_training_checkpoint_is_exact(cfg, tmp_path):
    init = _model(bn=True)
    # saved at validation end, i.e. before the epoch-end hooks: the SWA snapshot must already be in
    ckpt = ModelCheckpoint(tmp_path, "{epoch}", save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=False)
    full = _module(copy.deepcopy(init), cfg, max_epochs=4)
    _trainer(max_epochs=4, enable_checkpointing=True, callbacks=[ckpt]).fit(
        full, _data(), _data()
    )  # with validation: checkpoints are saved before epoch end

    path = tmp_path / "epoch=2.ckpt"
    saved = torch.load(path, weights_only=True)  # the pipeline's loading policy
    if "swa" in cfg:
        assert int(saved["swa"]["average"]["n_averaged"]) == 1
    resumed = _module(copy.deepcopy(init), cfg, max_epochs=4)
    trainer = _trainer(max_epochs=4)
    trainer.fit(resumed, _data(), _data(), ckpt_path=path)
    assert trainer.global_step == 4 * STEPS
    final, again = full.model.state_dict(), resumed.model.state_dict()
    for k in final:
        assert torch.equal(final[k], again[k]), k

import copy
import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from landscape_sweep.training.module import LitClassifier
from landscape_sweep.training.swa import SWA

BATCH, STEPS, EPOCHS = 8, 4, 4


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH * STEPS, 4, generator=g, dtype=torch.float64)
    y = (x[:, 0] - x[:, 2] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).double()


def _fit(cfg, callbacks=(), **kw):
    module = LitClassifier(_model(), cfg, max_epochs=EPOCHS, steps_per_epoch=STEPS)
    opts = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", callbacks=list(callbacks), **{**opts, **kw})
    trainer.fit(module, _data())
    return module, trainer


class Record(Callback):
    """Weights at the end of every epoch and the LR of every step."""

    def __init__(self):
        self.snapshots, self.lrs = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_epoch_end(self, trainer, pl_module):
        self.snapshots.append({k: v.detach().clone() for k, v in pl_module.model.named_parameters()})


@pytest.mark.parametrize("rho", [None, 0.05])
def test_average_is_the_mean_of_the_epoch_end_snapshots(rho):
    rec = Record()
    module, trainer = _fit({"rho": rho, "swa": {"enabled": True, "start": 1}}, [rec])
    assert trainer.global_step == EPOCHS * STEPS and module.swa.n_averaged == EPOCHS - 1
    for k, p in module.model.named_parameters():
        mean = torch.stack([s[k] for s in rec.snapshots[1:]]).mean(0)
        torch.testing.assert_close(p.detach(), mean, rtol=0, atol=1e-14)
        assert not torch.equal(p.detach(), rec.snapshots[-1][k])  # really not the last iterate


def test_bn_stats_of_the_average_come_from_a_fresh_pass_over_the_training_data():
    module, _ = _fit({"swa": {"enabled": True, "start": 2}})
    lin, bn = module.model[0], module.model[1]
    with torch.no_grad():
        hs = [lin(x) for x, _ in _data()]
    mean = torch.stack([h.mean(0) for h in hs]).mean(0)  # cumulative average over the batches
    var = torch.stack([h.var(0, unbiased=True) for h in hs]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean, rtol=0, atol=1e-14)
    torch.testing.assert_close(bn.running_var, var, rtol=0, atol=1e-14)
    assert int(bn.num_batches_tracked) == STEPS and bn.momentum == 0.1


@pytest.mark.parametrize("strategy", ["cos", "linear"])
def test_swalr_takes_over_the_schedule_from_swa_start(strategy):
    rec = Record()
    swa = {"enabled": True, "start": 2, "lr": 0.01, "anneal_epochs": 1, "anneal_strategy": strategy}
    _fit({"lr": 0.1, "swa": swa}, [rec])
    total = EPOCHS * STEPS
    base = [0.05 * (1 + math.cos(math.pi * s / total)) for s in range(2 * STEPS)]
    assert rec.lrs[: 2 * STEPS] == pytest.approx(base, rel=1e-12)
    l0 = 0.05 * (1 + math.cos(math.pi * 2 * STEPS / total))  # base LR reached at swa.start

    def alpha(t):
        return (1 - math.cos(math.pi * t)) / 2 if strategy == "cos" else t

    anneal = [0.01 * alpha(min(1, k / STEPS)) + l0 * (1 - alpha(min(1, k / STEPS))) for k in range(2 * STEPS)]
    assert rec.lrs[2 * STEPS :] == pytest.approx(anneal, rel=1e-12)
    assert rec.lrs[-1] == pytest.approx(0.01, rel=1e-12)


def test_checkpoint_holds_the_average_and_its_counter(tmp_path):
    rec = Record()
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    _fit({"swa": {"enabled": True, "start": 2}}, [rec, ckpt], enable_checkpointing=True)
    before = torch.load(tmp_path / "epoch=1.ckpt", weights_only=True)
    assert before["swa"] == {"average": None, "scheduler": None}
    saved = torch.load(tmp_path / "epoch=3.ckpt", weights_only=True)
    assert int(saved["swa"]["average"]["n_averaged"]) == 2
    assert saved["swa"]["scheduler"]["_step_count"] == 2 * STEPS + 1
    for k in rec.snapshots[0]:
        mean = (rec.snapshots[2][k] + rec.snapshots[3][k]) / 2
        torch.testing.assert_close(saved["swa"]["average"][f"module.{k}"], mean, rtol=0, atol=1e-14)
        assert torch.equal(saved["state_dict"][f"model.{k}"], rec.snapshots[3][k])  # running weights stay


def test_nothing_averaged_leaves_the_running_model():
    rec = Record()
    module, trainer = _fit({"swa": {"enabled": True, "start": 3}}, [rec], max_steps=2 * STEPS)
    assert module.swa.n_averaged == 0 and trainer.global_step == 2 * STEPS
    for k, p in module.model.named_parameters():
        assert torch.equal(p.detach(), rec.snapshots[-1][k])


def test_swa_state_roundtrip_outside_lightning():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    swa = SWA({"swa": {"enabled": True, "start": 0}}, max_epochs=2, steps_per_epoch=3)
    swa.begin(model, opt)
    swa.update(model)
    state = copy.deepcopy(swa.state_dict())
    other = SWA({"swa": {"enabled": True, "start": 0}}, max_epochs=2, steps_per_epoch=3)
    other.load_state_dict(state)
    assert other.state_dict() == state  # pending state is still saved before begin()
    other.begin(copy.deepcopy(model), opt)
    assert other.n_averaged == 1 and other.scheduler.state_dict() == swa.scheduler.state_dict()
    with pytest.raises(ValueError, match=r"^optimizer.swa.enabled=False"):
        SWA({}, max_epochs=2, steps_per_epoch=3)

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from landscape_sweep.data import TensorLoader
from landscape_sweep.training import callbacks
from landscape_sweep.training.callbacks import EpochCheckpoints, SameDirCheckpointIO
from landscape_sweep.training.module import EpochAsBatch, LitClassifier

EPOCHS = 6


def _loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    return EpochAsBatch(TensorLoader(x, (x[:, 0] > 0).long(), batch_size=16, shuffle=True, seed=1))


def _module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    return LitClassifier(model, {"lr": 0.1, "rho": 0.05}, max_epochs=EPOCHS, steps_per_epoch=4)


def _fit(module, extra=(), ckpt_path=None, every_s=3600.0, path=None):
    ckpt = EpochCheckpoints(path, [2], every_s=every_s)
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, plugins=[SameDirCheckpointIO()], callbacks=[ckpt, *extra],
    )  # fmt: skip
    trainer.fit(module, _loader(), ckpt_path=ckpt_path)
    return trainer


class Interrupt(pl.Callback):
    """Ctrl-C at the start of epoch `at` (0-based), after its previous epoch ended."""

    def __init__(self, at: int):
        self.at = at

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            raise KeyboardInterrupt


class Requeue(pl.Callback):
    """What a launcher's requeue handler does, called after epoch `at` (1-based) ended."""

    def __init__(self, at: int):
        self.at, self.state = at, None

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 == self.at:
            callbacks.save_pending()


def test_in_memory_copies_are_rate_limited(tmp_path, monkeypatch):
    copies, now = [], [1000.0]

    def monotonic() -> float:  # the callbacks' clock: 0.1 s a reading, whatever the machine's speed
        now[0] += 0.1
        return now[0]

    monkeypatch.setattr(callbacks, "time", SimpleNamespace(monotonic=monotonic))
    monkeypatch.setattr(callbacks, "apply_to_collection", lambda state, *a: copies.append(state["epoch"]) or state)
    _fit(_module(), path=tmp_path)  # six epochs within a second: one copy, after the first
    assert copies == [0] and now[0] < 1000.0 + callbacks.SNAPSHOT_S


def _weights(module):
    return {k: v.clone() for k, v in module.model.state_dict().items()}


def test_last_ckpt_waits_for_its_interval_but_trajectory_epochs_are_written(tmp_path):
    _fit(_module(), path=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch2.ckpt"]  # a short run writes no last.ckpt
    _fit(_module(), path=tmp_path / "every", every_s=0)
    assert torch.load(tmp_path / "every" / "last.ckpt", weights_only=True)["epoch"] == EPOCHS - 1
    assert not callbacks._ACTIVE  # a finished run is forgotten


@pytest.mark.parametrize("how", ["interrupt", "requeue"])
def test_pending_epoch_is_written_on_interrupt_and_requeue_and_resumes_exactly(tmp_path, how, monkeypatch):
    monkeypatch.setattr(callbacks, "SNAPSHOT_S", 0.0)  # these epochs take milliseconds: copy after each one
    straight = _module()
    _fit(straight, path=tmp_path / "straight")
    first = _module()
    if how == "interrupt":
        with pytest.raises(SystemExit):  # Lightning's graceful Ctrl-C: on_exception hooks, then exit
            _fit(first, [Interrupt(at=4)], path=tmp_path)
    else:
        _fit(first, [Requeue(at=4)], path=tmp_path)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 3 and saved["global_step"] == 4 * 4  # the state after epoch 4, not a later one
    resumed = _module()
    trainer = _fit(resumed, ckpt_path=tmp_path / "last.ckpt", path=tmp_path)
    assert trainer.global_step == EPOCHS * 4
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)

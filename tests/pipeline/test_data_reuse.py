"""Cells run one after another in one process (basic launcher, packed jobs) load their data once per data setting."""

from __future__ import annotations

import torch

from landscape_sweep.pipeline import cell
from landscape_sweep.pipeline.config import validate
from tests._support.cli import FAST

CELL = [*FAST, "trainer.max_epochs=1", "data.train_size=256", "trainer.threads=1",
        "landscape.connectivity.methods=[linear]"]  # fmt: skip


def _splits(data):
    return [data.train, data.test, *([data.val] if data.val is not None else []), *data.ood.values()]


def test_a_second_cell_with_the_same_data_settings_reuses_the_data(compose_cfg, tmp_path, monkeypatch):
    loads = []
    load = cell.load_cell_data
    monkeypatch.setattr(cell, "load_cell_data", lambda cfg: loads.append(cfg["data"]["train_size"]) or load(cfg))
    monkeypatch.setattr(cell, "_loaded", {})
    first = cell.run_cell(compose_cfg([*CELL, "model.width=8"]), tmp_path / "a")
    second = cell.run_cell(compose_cfg([*CELL, "model.width=16", "data.batch_size=64"]), tmp_path / "b")
    assert first.status == second.status == "completed" and (first.cell["width"], second.cell["width"]) == (8, 16)
    assert loads == [256]  # loaded once
    (cached,) = cell._loaded.values()
    fresh = load(validate(compose_cfg(CELL)))
    for a, b in zip(_splits(cached), _splits(fresh), strict=True):  # no stage of a cell wrote into the tensors
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    monkeypatch.setattr(cell, "_loaded", {})  # the same cell on freshly loaded data: the same results
    again = cell.run_cell(compose_cfg([*CELL, "model.width=16", "data.batch_size=64"]), tmp_path / "c")
    assert [e.train_loss for e in again.endpoints] == [e.train_loss for e in second.endpoints]
    assert [p.loss_barrier for p in again.connectivity] == [p.loss_barrier for p in second.connectivity]

    other = cell.run_cell(compose_cfg([*CELL, "data.train_size=128"]), tmp_path / "d")
    assert other.status == "completed" and loads == [256, 256, 128]  # other data settings: loaded
    assert len(cell._loaded) == 1  # one bundle kept at a time

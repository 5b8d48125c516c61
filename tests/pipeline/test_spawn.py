"""`endpoints.mode=spawn` (instability analysis) and the separate init/data seeds of `endpoints.data_seeds`."""

from __future__ import annotations

import copy
import logging
import math

import pytest
import pytorch_lightning as pl
import torch

from landscape_sweep.pipeline import cell, endpoint, measures, spawn
from landscape_sweep.pipeline.config import ConfigError, config_hash, validate
from landscape_sweep.pipeline.parallel import train_endpoints
from landscape_sweep.pipeline.tracking import Tracker, wandb_name
from landscape_sweep.results import CellResult, cell_stats, validate_results

TINY = [
    "landscape=fast",  # trajectory and endpoint budgets: the tests compare states and records, not the measures
    "trainer.max_epochs=4",
    "data.train_size=256",
    "model.width=8",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "landscape.analysis_size=64",
]
SPAWN = [*TINY, "endpoints.mode=spawn", "endpoints.spawn_epochs=[0,2]", "endpoints.seeds=[0,1]"]


def _setup(compose_cfg, job_dir, overrides):
    config = validate(compose_cfg(overrides))
    data = cell.load_cell_data(config)
    tracker = Tracker(config, job_dir, group="g", job_type="t", name="n")
    return config, data, tracker, measures.analysis_data(config, data)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


class Capture(pl.Callback):
    """The state a run starts training from: weights, optimizer state, LR schedule position, epoch."""

    def on_train_start(self, trainer, pl_module):
        self.weights = _weights(pl_module.model)
        self.optimizer = copy.deepcopy(trainer.optimizers[0].state_dict())  # its tensors move on with training
        self.scheduler = trainer.lr_scheduler_configs[0].scheduler.state_dict()
        self.epoch = trainer.current_epoch


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["endpoints.mode=spwan"], "endpoints.mode='spwan': must be one of independent, spawn"),
        (["endpoints.spawn_epochs=[0,4]"], "endpoints.spawn_epochs=[0, 4]: must be a non-empty list of epochs in 0..3"),
        (["endpoints.spawn_epochs=[-1]"], "endpoints.spawn_epochs=[-1]: must be a non-empty list of epochs in 0..3"),
        (["endpoints.spawn_epochs=[]"], "endpoints.spawn_epochs=[]: must be a non-empty list"),
        (["endpoints.spawn_epochs=[1,1]"], "endpoints.spawn_epochs=[1, 1]: must not contain duplicates"),
        (["endpoints.seeds=[0]"], "endpoints.seeds=[0]: spawn mode needs >= 2 children"),
        (["endpoints.data_seeds=[3,3]"], "endpoints.data_seeds=[3, 3]: spawn mode needs a different data seed"),
        (["endpoints.parallel=vmap"], "endpoints.parallel='vmap': must be none with endpoints.mode=spawn"),
        (["endpoints.mode=independent"], "endpoints.spawn_epochs=[0, 2]: only with endpoints.mode=spawn"),
        (["endpoints.data_seeds=[1]"], "endpoints.data_seeds=[1]: must be null (= endpoints.seeds) or 2 integers"),
        (["endpoints.mode=independent", "endpoints.spawn_epochs=[]", "endpoints.seeds=[0,0]"],
         "endpoints.seeds=[0, 0]: must not contain duplicates"),
    ],
)  # fmt: skip
def test_bad_spawn_config_fails_in_one_line(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg([*SPAWN, *overrides]))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_default_endpoint_keys_keep_the_identity_of_older_configs(compose_cfg):
    config = validate(compose_cfg(TINY))
    older = {**config, "endpoints": {"seeds": config["endpoints"]["seeds"], "parallel": "none"}}
    assert config_hash(config) == config_hash(older)
    assert config_hash(validate(compose_cfg([*TINY, "endpoints.data_seeds=[5,6,7]"]))) != config_hash(config)


def test_children_start_from_the_parents_state_and_differ_only_by_data_order(compose_cfg, tmp_path, monkeypatch):
    config, data, tracker, ad = _setup(compose_cfg, tmp_path, SPAWN)
    spawn.train_parent(config, data, tmp_path, tracker, ad)
    parent = torch.load(tmp_path / "checkpoints" / "parent" / "epoch2.ckpt", weights_only=False)
    captures, make = [], endpoint.make_trainer

    def trainer_with_capture(cfg, callbacks, *args):
        captures.append(Capture())
        return make(cfg, [*callbacks, captures[-1]], *args)

    monkeypatch.setattr(endpoint, "make_trainer", trainer_with_capture)
    runs = spawn.child_runs(config, tmp_path, 2)
    trained = [endpoint.train_endpoint(config, data, run, tmp_path, tracker, ad) for run in runs]
    for c in captures:  # exactly the parent's epoch-2 state: weights, momentum buffers, LR-schedule position, epoch
        assert c.epoch == 2
        assert _same({f"model.{k}": v for k, v in c.weights.items()}, parent["state_dict"])
        got, expected = c.optimizer["state"], parent["optimizer_states"][0]["state"]
        assert sorted(got) == sorted(expected) and got
        assert all(torch.equal(got[i]["momentum_buffer"], expected[i]["momentum_buffer"]) for i in got)
        assert c.scheduler["last_epoch"] == parent["lr_schedulers"][0]["last_epoch"] > 0
    (m0, e0), (m1, e1) = trained
    assert (e0.init_seed, e0.data_seed, e1.init_seed, e1.data_seed, e1.spawn_epoch) == (0, 0, 0, 1, 2)
    assert not _same(_weights(m0), _weights(m1))  # different data order, different minimum
    again = endpoint.Run(1, 0, 1, tmp_path / "again", start=runs[1].start, spawn_epoch=2)
    m1b, _ = endpoint.train_endpoint(config, data, again, tmp_path, tracker, ad)
    assert _same(_weights(m1), _weights(m1b))  # the same data seed reproduces the child


def test_independent_endpoints_with_one_init_and_two_data_seeds(compose_cfg, tmp_path):
    overrides = [*TINY, "trainer.max_epochs=1", "endpoints.seeds=[0,0]", "endpoints.data_seeds=[1,2]"]
    config, data, tracker, ad = _setup(compose_cfg, tmp_path, overrides)
    runs = endpoint.independent_runs(config, tmp_path)
    assert [r.ck.name for r in runs] == ["seed0_data1", "seed0_data2"]
    built = [endpoint.build_run(config, data, r, ad)[0].model for r in runs]
    assert _same(_weights(built[0]), _weights(built[1]))  # same init seed: identical initial weights
    trained = train_endpoints(config, data, tmp_path, tracker, ad)
    assert not _same(_weights(trained[0][0]), _weights(trained[1][0]))  # different data orders
    assert [(e.seed, e.init_seed, e.data_seed) for _, e in trained] == [(0, 0, 1), (0, 0, 2)]


def _record(k: int, barriers: list[float]) -> dict:
    pairs = [{"pair": [0, i + 1], "test_error_barrier_mean": b, "error_barrier": b / 2} for i, b in enumerate(barriers)]
    return {"spawn_epoch": k, "children": [0, 1, 2], "pairs": pairs}


def test_instability_summaries_and_wandb_names():
    result = CellResult(status="completed", instability=[_record(0, [0.1, 0.2]), _record(2, [0.01])], stable_epoch=2)
    stats = cell_stats(result)
    s = stats["instability/0/test_error_barrier_mean"]
    assert (s.n, round(s.mean, 6), round(s.stderr, 6)) == (2, 0.15, 0.05)
    assert stats["instability/2/error_barrier"].n == 1 and math.isnan(stats["instability/2/error_barrier"].stderr)
    assert stats["stable_epoch"].mean == 2
    assert wandb_name("instability/0/test_error_barrier_mean") == "instability/0/test_error_barrier_mean"
    assert wandb_name("stable_epoch") == "instability/stable_epoch"
    d = CellResult.from_dict(result.to_dict()).to_dict()
    assert validate_results(d) is None
    d["instability"][1]["pairs"][0]["test_error_barrier_mean"] = "high"
    assert validate_results(d).startswith("instability[1].pairs[0].test_error_barrier_mean: must be a number")


@pytest.mark.slow
def test_spawn_cell_records_instability_and_resumes_only_the_interrupted_child(compose_cfg, tmp_path, caplog):
    extra = ["landscape.connectivity.methods=[linear]", "landscape.checkpoint_epochs=[3]"]
    cfg = compose_cfg([*SPAWN, *extra, "trainer.checkpoint_every_s=0", "endpoints.seeds=[0,1,2]"])
    job = tmp_path / "job"
    done = cell.run_cell(cfg, job)
    assert done.status == "completed", done.error
    assert [r["spawn_epoch"] for r in done.instability] == [0, 2]
    for rec in done.instability:
        assert rec["children"] == [0, 1, 2] and [p["pair"] for p in rec["pairs"]] == [[0, 1], [0, 2], [1, 2]]
        summary = rec["test_error_barrier_mean"]
        assert summary["n"] == 3 and rec["stable"] == (summary["mean"] < 0.02)
    assert done.stable_epoch == next((r["spawn_epoch"] for r in done.instability if r["stable"]), None)
    assert [e.spawn_epoch for e in done.endpoints] == [2, 2, 2]  # the last spawn epoch's children
    assert {"instability/0/test_error_barrier_mean", "instability/2/loss_barrier"} <= set(cell_stats(done))
    # the last k's linear paths are the cell's connectivity: the same numbers in both places
    assert [p.test_error_barrier_mean for p in done.connectivity] == [
        p["test_error_barrier_mean"] for p in done.instability[-1]["pairs"]
    ]
    # a kill in the middle of child spawn0/seed1: its state after epoch 3 is its last.ckpt, no final.pt, no results
    ck = job / "checkpoints" / "spawn0" / "seed1"
    final = torch.load(ck / "final.pt", weights_only=True)
    (ck / "last.ckpt").write_bytes((ck / "epoch3.ckpt").read_bytes())
    for name in ("final.pt", "final.json"):
        (ck / name).unlink()
    (job / "results.json").unlink()
    with caplog.at_level(logging.INFO, logger="landscape_sweep"):
        again = cell.run_cell(cfg, job)
    log = caplog.text
    assert again.status == "completed"
    assert "reusing the parent's checkpoints" in log and "parent: training" not in log
    assert f"spawn0/seed1: resuming from {ck / 'last.ckpt'}" in log
    assert log.count("reusing finished endpoint") == 5  # every other child
    assert _same(final, torch.load(ck / "final.pt", weights_only=True))
    assert again.instability == done.instability
    with caplog.at_level(logging.INFO, logger="landscape_sweep"):
        assert cell.run_cell(cfg, job).config_hash == done.config_hash
    assert "cell already completed" in caplog.text
    # re-analysis (no retraining) measures the same instability from the saved children
    from landscape_sweep.analyze import reanalyze_cell

    redone = reanalyze_cell(job, {**done.config["landscape"], "checkpoint_epochs": [3]})
    assert redone.instability == done.instability and redone.stable_epoch == done.stable_epoch


def test_interrupted_parent_resumes_and_a_finished_one_is_reused(compose_cfg, tmp_path, caplog):
    overrides = [*SPAWN, "endpoints.spawn_epochs=[0,3]", "landscape.checkpoint_epochs=[1]"]
    config, data, tracker, ad = _setup(compose_cfg, tmp_path, overrides)
    spawn.train_parent(config, data, tmp_path, tracker, ad)
    ck = tmp_path / "checkpoints" / "parent"
    whole = torch.load(ck / "epoch3.ckpt", weights_only=False)["state_dict"]
    (ck / "last.ckpt").write_bytes((ck / "epoch1.ckpt").read_bytes())  # killed during epoch 2
    (ck / "epoch3.ckpt").unlink()
    with caplog.at_level(logging.INFO, logger="landscape_sweep"):
        spawn.train_parent(config, data, tmp_path, tracker, ad)
        assert "parent: resuming to epoch 3" in caplog.text
        assert _same(whole, torch.load(ck / "epoch3.ckpt", weights_only=False)["state_dict"])
        caplog.clear()
        spawn.train_parent(config, data, tmp_path, tracker, ad)
        assert "reusing the parent's checkpoints" in caplog.text


def test_instability_stderr_resamples_children_not_pairs():
    """Child pairs share children: the error of the mean over pairs is the jackknife over children (here twice
    std/sqrt(3), since each barrier is the sum of its two children's effects), not std/sqrt(n) over pairs."""
    from landscape_sweep.results import Endpoint, PathEntry

    effects = [0.0, 0.1, 0.5]
    ends = [Endpoint(seed=s, test_acc=0.6) for s in range(3)]
    paths = [
        PathEntry(pair=[i, j], method="linear", **{m: effects[i] + effects[j] for m in spawn.INSTABILITY_MEASURES})
        for i, j in ((0, 1), (0, 2), (1, 2))
    ]
    rec = spawn.instability_record(2, ends, paths)
    s = rec["test_error_barrier_mean"]
    assert s["n"] == 3 and s["stderr"] == pytest.approx(2 * s["std"] / math.sqrt(3))


class _Payload:
    """Unpickling it writes a marker file: a crafted checkpoint in a shared job dir."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return Path.write_text, (Path(self.marker), "code ran")


@pytest.mark.parametrize("damage", ["crafted", "truncated"])
def test_a_bad_parent_checkpoint_runs_nothing_and_the_parent_is_retrained(
    compose_cfg, tmp_path, caplog, monkeypatch, damage
):
    """A child starts from the parent's `epoch<k>.ckpt` loaded with weights_only (even under
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, which only overrides a load that does not say), and a parent checkpoint that
    does not load as data is retrained like a bad last.ckpt, instead of failing the cell on every rerun."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    fits = []
    real_fit = pl.Trainer.fit

    def fit(self, *args, **kwargs):
        fits.append(kwargs)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "fit", fit)
    config, data, tracker, ad = _setup(compose_cfg, tmp_path, SPAWN)
    spawn.train_parent(config, data, tmp_path, tracker, ad)
    parent = tmp_path / "checkpoints" / "parent" / "epoch2.ckpt"
    good = torch.load(parent, weights_only=True)["state_dict"]
    marker = tmp_path / "marker"
    if damage == "crafted":
        torch.save({"state_dict": _Payload(marker)}, parent)
    else:
        parent.write_bytes(parent.read_bytes()[: parent.stat().st_size // 2])
    with caplog.at_level(logging.INFO, logger="landscape_sweep"):
        trained = spawn.train_spawned(config, data, tmp_path, tracker, ad)
    assert not marker.exists(), "loading the parent's checkpoint ran code"
    assert f"ignoring unreadable parent checkpoint {parent} (" in caplog.text, caplog.text
    assert "parent: training to epoch 2" in caplog.text
    assert _same(good, torch.load(parent, weights_only=True)["state_dict"])  # the same parent again
    assert [e.spawn_epoch for _, e in trained[2]] == [2, 2]
    assert all(kw.get("weights_only") is True for kw in fits if kw.get("ckpt_path")), fits
    assert any(kw.get("ckpt_path") == str(parent) for kw in fits)

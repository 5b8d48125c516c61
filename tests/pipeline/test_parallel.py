"""`endpoints.parallel`: processes and vmap train the same endpoints as none, write the same files, log the same
per-seed metrics and fail the same way."""

from __future__ import annotations

import json

import pytest
import torch

from landscape_sweep.pipeline import cell, endpoint, measures, parallel
from landscape_sweep.pipeline.config import ConfigError, validate
from landscape_sweep.pipeline.ensemble_fit import EnsembleFit
from landscape_sweep.pipeline.parallel import train_endpoints
from landscape_sweep.pipeline.threads import PIN_ENV
from landscape_sweep.pipeline.tracking import Tracker
from tests._support.cli import FAST, check_completed, only
from tests._support.wandb_offline import offline_runs, read_run

TINY = [
    "landscape=fast",  # the trajectory points' budgets (they are compared across modes, not judged)
    "trainer.max_epochs=2",
    "data.train_size=256",
    "model.width=8",
    "endpoints.seeds=[0,1]",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "landscape.checkpoint_epochs=[1]",
    "landscape.analysis_size=64",
]


def _train(compose_cfg, job_dir, overrides, mode):
    config = validate(compose_cfg([*TINY, *overrides, f"endpoints.parallel={mode}"]))
    data = cell.load_cell_data(config)
    tracker = Tracker(config, job_dir, group="g", job_type="t", name="n")
    return train_endpoints(config, data, job_dir, tracker, measures.analysis_data(config, data))


def _max_diff(a, b) -> float:
    return max(
        (x - y).abs().max().item()
        for (ma, _), (mb, _) in zip(a, b)
        for x, y in zip(ma.state_dict().values(), mb.state_dict().values())
        if x.is_floating_point()
    )


# processes (spawned workers: seconds of imports each) on the richest case; plain SGD's processes run is the CLI
# test's, bit-identical to none there too
WITH_PROCESSES = ("batchnorm_sam_swa_clip",)


@pytest.fixture
def one_thread(monkeypatch):
    # processes train with 1 thread: the reference too (threads change float rounding); pinned the way a cell pins
    # its workers, so trainer.threads=auto keeps it
    threads = torch.get_num_threads()
    monkeypatch.setenv(PIN_ENV, "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CASES = {
    "sgd": ["optimizer=sgd"],
    "sam": ["optimizer=sam"],
    "asam": ["optimizer=asam"],
    "adamw": ["optimizer=adamw"],
    "swa": ["optimizer=swa"],
    "batchnorm_sam_swa_clip": ["optimizer=sam_swa", "model.norm=batchnorm", "optimizer.grad_clip=0.5"],
}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c in WITH_PROCESSES else c for c in CASES], ids=list(CASES)
)
def test_vmap_and_processes_train_the_endpoints_of_none(compose_cfg, tmp_path, one_thread, case):
    overrides = CASES[case]
    none = _train(compose_cfg, tmp_path / "none", overrides, "none")
    vmap = _train(compose_cfg, tmp_path / "vmap", overrides, "vmap")
    assert _max_diff(none, vmap) <= 1e-5
    for (_, a), (_, b) in zip(none, vmap):
        assert (a.seed, a.epochs, a.checkpoint, a.stop) == (b.seed, b.epochs, b.checkpoint, b.stop)
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-5)
        assert [p["epoch"] for p in a.trajectory] == [p["epoch"] for p in b.trajectory] == [1]
        assert a.trajectory[0]["hessian_top_eig"] == pytest.approx(b.trajectory[0]["hessian_top_eig"], rel=1e-3)
    if case in WITH_PROCESSES:  # spawned workers: seconds of imports each
        processes = _train(compose_cfg, tmp_path / "processes", overrides, "processes")
        assert _max_diff(none, processes) == 0.0  # bit-identical
        for (_, a), (_, b) in zip(none, processes):
            assert {**a.to_dict(), "train_time_s": 0} == {**b.to_dict(), "train_time_s": 0}


def test_vmap_stop_at_and_resume(compose_cfg, tmp_path, monkeypatch):
    """stop_at per endpoint; an ensemble interrupted after epoch 2 resumes to the uninterrupted weights."""
    overrides = ["trainer.max_epochs=4", "trainer.stop_at.train_loss=2.31", "trainer.checkpoint_every_s=0"]
    none = _train(compose_cfg, tmp_path / "none", overrides, "none")
    whole = _train(compose_cfg, tmp_path / "whole", overrides, "vmap")
    assert [e.stop for _, e in whole] == [e.stop for _, e in none] and [e.epochs for _, e in whole] == [
        e.epochs for _, e in none
    ]
    epoch_end = EnsembleFit._epoch_end

    def interrupted(self, s, *args):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return epoch_end(self, s, *args)

    monkeypatch.setattr(EnsembleFit, "_epoch_end", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(compose_cfg, tmp_path / "resumed", overrides, "vmap")
    assert (tmp_path / "resumed" / "checkpoints" / "seed0" / "vmap_last.pt").is_file()
    monkeypatch.setattr(EnsembleFit, "_epoch_end", epoch_end)
    resumed = _train(compose_cfg, tmp_path / "resumed", overrides, "vmap")
    assert _max_diff(whole, resumed) == 0.0
    assert [e.trajectory for _, e in resumed] == [e.trajectory for _, e in whole]


@pytest.mark.parametrize("mode", [pytest.param("processes", marks=pytest.mark.slow), "vmap"])
def test_divergence_and_failure_are_reported_as_in_none(compose_cfg, tmp_path, monkeypatch, one_thread, mode):
    # one_thread: processes starts one worker (the cell's share of the cores), which trains both endpoints
    def status(overrides, mode, job):
        r = cell.run_cell(compose_cfg([*TINY, *overrides, f"endpoints.parallel={mode}"]), tmp_path / job)
        return r.status, r.error

    # with TINY's checkpoint_epochs=[1]: no trajectory point is measured on the NaN model of a diverged epoch
    diverging = ["optimizer.lr=1000", "data.train_size=512", "model.width=16"]
    expected = status(diverging, "none", "none")
    assert expected[0] == "diverged" and status(diverging, mode, mode) == expected
    if (
        mode == "processes" and parallel.start_method(torch.device("cpu")) == "fork"
    ):  # the patch reaches a forked worker
        finalise = endpoint.finalise

        def failing(cfg, data, module, trainer, callbacks, run, *args):
            if run.seed == 1:
                raise OSError(f"disk full at seed {run.seed}")
            return finalise(cfg, data, module, trainer, callbacks, run, *args)

        monkeypatch.setattr(endpoint, "finalise", failing)
        assert status([], "processes", "p2") == status([], "none", "n2") == ("failed", "OSError: disk full at seed 1")


def test_parallel_value_and_vmap_refusals_are_one_line(compose_cfg):
    with pytest.raises(ConfigError, match=r"^endpoints.parallel='threads': must be one of none, processes, vmap$"):
        validate(compose_cfg([*TINY, "endpoints.parallel=threads"]))
    with pytest.raises(ConfigError, match=r"^trainer.precision='bf16-mixed': must be 32-true with endpoints.parallel"):
        validate(compose_cfg([*TINY, "endpoints.parallel=vmap", "trainer.precision=bf16-mixed"]))
    with pytest.raises(ConfigError, match=r"^trainer.min_epochs=2: must be 0 \(unset\) with endpoints.parallel=vmap$"):
        validate(compose_cfg([*TINY, "endpoints.parallel=vmap", "+trainer.min_epochs=2"]))


MODES = ("none", "processes")


@pytest.mark.slow
def test_cli_processes_and_vmap_match_none_and_log_per_seed_metrics(run_main, tmp_path):
    results, histories = {}, {}
    # one thread, as the processes' workers have: none and processes then round alike (threads is a run-only key)
    fast = [o for o in FAST if o != "logger=none"] + ["landscape=fast", "trainer.threads=1"]
    for mode in ("none", "processes", "vmap"):  # the CLI's main in this process; processes: its worker processes
        job = tmp_path / mode
        run_main([*fast, f"endpoints.parallel={mode}", f"hydra.run.dir={job}"])
        results[mode] = check_completed(job)
        rows = read_run(only(offline_runs(job)))["history"]
        histories[mode] = {k for row in rows for k in row if k.startswith("seed")}
    for mode in ("processes", "vmap"):
        r, ref = results[mode], results["none"]
        assert set(r) == set(ref) and r["config_hash"] == ref["config_hash"]
        for a, b in zip(r["connectivity"], ref["connectivity"]):
            assert a["loss_barrier"] == pytest.approx(b["loss_barrier"], abs=1e-4)
        for a, b in zip(r["endpoints"], ref["endpoints"]):
            assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-4)
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
            assert a["ood"]["noisy"]["loss"] == pytest.approx(b["ood"]["noisy"]["loss"], abs=1e-4)  # mnist1d's set
        expected = {f"seed{s}/{m}" for s in (0, 1) for m in ("train/loss", "train/acc", "final/test_acc")}
        assert expected <= histories[mode], (mode, sorted(histories[mode]))
        assert expected <= histories["none"]
    assert json.dumps(results["vmap"]["cell"]) == json.dumps(results["none"]["cell"])
    for seed in (0, 1):  # the processes' endpoints are bit-identical to none's
        a, b = (torch.load(tmp_path / m / "checkpoints" / f"seed{seed}" / "final.pt", weights_only=True) for m in MODES)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

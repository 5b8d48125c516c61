"""One cell = one Hydra job, the orchestrator: lock → data → schedule the endpoints → analyse → record.

Stages of `run_cell`: lock the job dir → skip if done → load data (`cell_data`, reused by the process's next cell of
the same data) → train every endpoint as `endpoints.mode`/`endpoints.parallel` say (`spawn.py`, `parallel.py`; each
run through `endpoint.py`: reuse, else resume or start → build → fit → finalise) → `analyse` (measures.py) →
`record` (results.json, cell files, W&B) → unlock.
Robustness contract (docs/architecture.md): any exception is caught here and recorded as `status: failed` with a
one-line error; a non-finite loss gives `status: diverged`; a cell whose results.json is `completed` for the same
config hash is skipped; a cell another live process holds the lock of is skipped here (status `locked`, nothing
written); an interrupted endpoint resumes from its `last.ckpt`; a finished endpoint (its `final.pt` with a
matching training hash) is never retrained, unless that file cannot be read. Every file is written through a
unique temp file beside it and renamed (`files.atomic_open`).

Completed results are never overwritten by another config, whatever the command line (Hydra flags skip the
pre-check in `app.py`): under the cell's lock, a job dir whose results.json is completed for a config that differs
in more than the analysis-only keys, or that this version cannot read, is refused (status `refused`, the one-line
reason naming the dir and the differing keys, nothing written); so is a cell whose lock a live process holds for
another such config, and a config error is recorded in results.json only when that holds no completed results.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

import landscape_sweep
from landscape_sweep.data import DataBundle, load_data
from landscape_sweep.models import num_params
from landscape_sweep.pipeline import measures, spawn, timing
from landscape_sweep.pipeline.artifacts import CellLock, lock_stale_after, write_cell_artifacts
from landscape_sweep.pipeline.config import (
    ConfigError,
    config_hash,
    conflicting_changes,
    describe_changes,
    job_dir_taken,
    validate,
)
from landscape_sweep.pipeline.endpoint import Diverged, final_weights, one_line, quiet_lightning, training_device
from landscape_sweep.pipeline.parallel import train_endpoints
from landscape_sweep.pipeline.threads import Registration, apply_threads
from landscape_sweep.pipeline.tracking import Tracker
from landscape_sweep.results import CellResult, read_json, read_results, results_path, write_results
from landscape_sweep.training.optim import optimizer_label

log = logging.getLogger(__name__)


# --- data ------------------------------------------------------------------------------------------------------
def load_cell_data(cfg: dict[str, Any]) -> DataBundle:
    """The cell's data as its `data.*` keys say (`data.load_data`)."""
    d = cfg["data"]
    return load_data(
        d["name"], d["root"], train_size=d["train_size"], label_noise=d["label_noise"], val_size=d["val_size"],
        seed=d["seed"], download=d["download"], augment=d["augment"], ood=d.get("ood"), **(d.get("options") or {}),
    )  # fmt: skip


# the data of the last cell this process loaded, under its `data_key`: a later cell of the same process (the basic
# launcher's in-process sweep, a packed job's cells) with the same data settings reuses it (`cell_data`)
_loaded: dict[str, DataBundle] = {}


def data_key(cfg: dict[str, Any], device: torch.device) -> str:
    """What a cell's data is a function of: `load_cell_data`'s arguments (the root as an absolute path) and the
    device the tensors live on."""
    d = cfg["data"]
    args = {k: d.get(k) for k in ("name", "train_size", "label_noise", "val_size", "seed", "download", "augment")}
    args.update(root=os.path.abspath(str(d["root"])), ood=d.get("ood"), options=d.get("options") or {})
    return json.dumps([args, str(device)], sort_keys=True, default=str)


def cell_data(cfg: dict[str, Any]) -> DataBundle:
    """The cell's data on its training device: the previous cell's bundle when it was loaded with the same
    `data_key`, else loaded (the previous one is let go first: one bundle in memory at a time). Nothing writes into
    a bundle's tensors after `load_data` (tests/pipeline/test_data_reuse.py checks a cell leaves them equal)."""
    device = training_device(cfg)
    key = data_key(cfg, device)
    if key in _loaded:
        log.info("reusing the data of the previous cell (same data settings)")
        return _loaded[key]
    _loaded.clear()
    data = load_cell_data(cfg).to(device)
    _loaded[key] = data
    return data


# --- the cell --------------------------------------------------------------------------------------------------
def cell_info(cfg: dict[str, Any], data: DataBundle | None, model: torch.nn.Module | None) -> dict[str, Any]:
    return {
        "dataset": cfg["data"]["name"],
        "arch": cfg["model"]["arch"],
        "depth": cfg["model"]["depth"],
        "width": cfg["model"]["width"],
        "norm": cfg["model"]["norm"],
        "optimizer": optimizer_label(cfg["optimizer"]),
        "num_params": num_params(model) if model is not None else None,
        "train_size": int(data.train[1].shape[0]) if data is not None else cfg["data"]["train_size"],
        "label_noise": cfg["data"]["label_noise"],
        "seeds": list(cfg["endpoints"]["seeds"]),
    }


def new_result(cfg: dict[str, Any]) -> CellResult:
    """The record of a cell before any work: identity, config, versions."""
    return CellResult(
        config_hash=config_hash(cfg), train_hash=config_hash(cfg, training_only=True), config=cfg,
        cell=cell_info(cfg, None, None), timing_s={"train": 0.0, "analysis": 0.0},
        versions={
            "torch": torch.__version__, "pytorch_lightning": pl.__version__,
            "landscape_sweep": landscape_sweep.__version__, "python": platform.python_version(),
        },
    )  # fmt: skip


def analyse(
    cfg: dict[str, Any], data: DataBundle, models: list[torch.nn.Module], result: CellResult, ad: measures.AnalysisData
) -> CellResult:
    """The result with every endpoint's measures and every pair's paths (see measures.py)."""
    t0, landscape, weights = time.perf_counter(), cfg["landscape"], final_weights(cfg)
    apply_threads(cfg["trainer"].get("threads", "auto"))
    endpoints = [
        dataclasses.replace(e, **measures.endpoint_measures(m, e, ad, landscape, cfg["seed"], weights=weights))
        for m, e in zip(models, result.endpoints)
    ]
    paths = measures.cell_paths(models, ad, landscape, cfg["seed"])
    times = {**result.timing_s, "analysis": time.perf_counter() - t0}
    return dataclasses.replace(result, endpoints=endpoints, connectivity=paths, timing_s=times)


def record(result: CellResult, job_dir: Path, tracker: Tracker | None) -> None:
    """results.json, then the cell's files and W&B payload (completed cells)."""
    write_results(job_dir, result)
    if result.status == "completed" and tracker is not None:
        tracker.log_cell(result, write_cell_artifacts(job_dir, result))


def cell_identity(config: dict[str, Any]) -> dict[str, Any]:
    """What a cell's lock says about the cell it runs: its config hashes and config (`CellLock(identity=...)`)."""
    return {"config_hash": config_hash(config), "train_hash": config_hash(config, training_only=True), "config": config}


def run_cell(cfg: Any, job_dir: str | Path, *, group: str = "default") -> CellResult:
    """Run one cell end to end and return its results (also written to `<job_dir>/results.json`).

    A cell whose lock a live process holds is left to it: status `locked` (error: who holds it), nothing written;
    `refused` (error: why, one line), nothing written, when the holder runs another training config, when the job
    dir holds completed results of one (`run_locked`), or for a config error where results.json is completed.
    """
    job_dir = Path(job_dir)
    quiet_lightning()
    try:
        config = validate(cfg)
    except ConfigError as e:  # only reachable when the pre-check was bypassed (e.g. Hydra flags)
        return config_failure(cfg, job_dir, e)
    lock = CellLock(job_dir, stale_after=lock_stale_after(), identity=cell_identity(config))
    if not lock.acquire():
        return _locked(config, job_dir, lock)
    try:
        with Registration():  # counted by every cell process that sizes its threads to its share of the cores
            apply_threads(config["trainer"].get("threads", "auto"))
            return run_locked(config, job_dir, group)
    finally:
        lock.release()


def _refuse(result: CellResult, why: str) -> CellResult:
    """`result` refused: status `refused`, `why` as its error (the caller logs it: `app.hydra_main`)."""
    return dataclasses.replace(result, status="refused", error=why)


def _locked(config: dict[str, Any], job_dir: Path, lock: CellLock) -> CellResult:
    """The cell another live process holds: `locked` when it runs this training config (or cannot tell), else
    `refused` (two sweeps of different configs into one dir: neither may take the other's cell)."""
    result, theirs = new_result(config), (lock.holder_info or {}).get("config")
    changes = conflicting_changes(theirs, config) if isinstance(theirs, dict) else {}
    if changes:
        return _refuse(
            result, f"job dir {job_dir} is being run by {lock.holder} for another config ({describe_changes(changes)})"
        )
    log.warning("cell %s is being run by %s: skipping it here", job_dir, lock.holder)
    return dataclasses.replace(result, status="locked", error=f"being run by {lock.holder}")


def config_failure(cfg: Any, job_dir: Path, error: ConfigError) -> CellResult:
    """A config error inside a cell: recorded as `failed` in results.json, unless that holds completed results (or a
    live process holds the cell): then the error is logged and nothing written (status `refused`)."""
    raw = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else dict(cfg)
    result = CellResult(status="failed", error=one_line(error), config={k: v for k, v in raw.items() if k != "hydra"})
    lock = CellLock(job_dir, stale_after=lock_stale_after())
    if not lock.acquire():
        return _refuse(result, f"{result.error} (not recorded: {job_dir} is being run by {lock.holder})")
    try:
        prev = read_json(results_path(job_dir))
        if isinstance(prev, dict) and prev.get("status") == "completed":
            return _refuse(result, f"{result.error} (not recorded: {results_path(job_dir)} holds completed results)")
        write_results(job_dir, result)
        return result
    finally:
        lock.release()


def _job_dir_conflict(job_dir: Path, config: dict[str, Any], result: CellResult) -> tuple[CellResult | None, str]:
    """(the completed results to keep, or None; why the job dir is not this cell's, or '') of a locked job dir."""
    try:
        prev = read_results(job_dir)
    except Exception as e:  # a schema this version does not read, or not a results record: never overwritten
        why = f"job dir {job_dir}: results.json cannot be read ({one_line(e)}); use a new job dir or move it aside"
        return None, why
    if prev is None or prev.status != "completed":
        return None, ""
    if prev.config_hash == result.config_hash:
        return prev, ""
    changes = conflicting_changes(prev.config, config)
    return None, job_dir_taken(job_dir, changes) if changes else ""


def run_locked(config: dict[str, Any], job_dir: Path, group: str) -> CellResult:
    """`run_cell` once the job dir is locked: refuse a job dir of another config, skip if done, else train, analyse
    and record; never raises."""
    result = new_result(config)
    prev, conflict = _job_dir_conflict(job_dir, config, result)
    if conflict:
        return _refuse(result, conflict)
    if prev is not None:
        log.info("cell already completed (config hash %s): skipping", result.config_hash)
        return prev
    t0, tracker, startup = time.perf_counter(), None, timing.cell_started()
    try:
        tracker = Tracker(config, job_dir, group=group, job_type=result.cell["optimizer"], name=job_dir.name)
        result.timing_s["wandb"] = time.perf_counter() - t0
        result = train_and_analyse(config, job_dir, tracker, result)
        result.status = "completed"
    except Diverged as e:
        result.status, result.error = "diverged", one_line(e)
    except Exception as e:  # the job boundary: record, never crash the sweep
        log.error("cell failed: %s\n%s", one_line(e), traceback.format_exc())
        result.status, result.error = "failed", one_line(e)
    finally:
        if result.status is not None:  # an interrupt (SIGTERM/Ctrl-C) leaves no results: the cell resumes later
            first = timing.first_step_at()
            result.timing_s.update(startup=startup, first_step=None if first is None else startup + first - t0)
            if tracker is not None:  # the W&B run starts in the background: what the cell waited for it
                result.timing_s["wandb"] += tracker.wait_s
            result.timing_s["total"] = time.perf_counter() - t0
            record(result, job_dir, tracker)
        if tracker is not None:
            tracker.close(exit_code=0 if result.status == "completed" else 1)
    return result


def train_and_analyse(config: dict[str, Any], job_dir: Path, tracker: Tracker, result: CellResult) -> CellResult:
    """Load the data, train every endpoint (filling `result` in place, so a failure keeps them), then analyse."""
    t0 = time.perf_counter()
    data = cell_data(config)
    ad = measures.analysis_data(config, data)
    result.timing_s["data"] = time.perf_counter() - t0
    tracker.wait()  # the W&B run, started in the background meanwhile (timing_s.wandb: what this waits)
    t0 = time.perf_counter()
    spawned = None
    if config["endpoints"].get("mode", "independent") == "spawn":  # the parent, then the children of each k
        spawned = spawn.train_spawned(config, data, job_dir, tracker, ad)
        trained = spawned[max(spawned)]  # the last spawn epoch's children are the cell's endpoints
    else:
        trained = train_endpoints(config, data, job_dir, tracker, ad)  # endpoints.parallel: none|processes|vmap
    models = [m for m, _ in trained]
    result.endpoints = [e for _, e in trained]
    result.cell = cell_info(config, data, models[0])
    result.timing_s["train"] = time.perf_counter() - t0
    tracker.summary_of(result)
    result = analyse(config, data, models, result, ad)
    return result if spawned is None else spawn.finish(result, spawned, ad, config)

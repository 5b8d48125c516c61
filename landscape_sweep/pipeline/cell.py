"""One cell = one Hydra job: load data once, train each endpoint seed, analyse, write results.json.

Stages of `run_cell`: lock the job dir → skip if done → load data → for each seed `train_endpoint` (reuse a
finished endpoint, else resume or start → build → fit → finalise) → `analyse` (measures.py) → `record`
(results.json, cell files, W&B) → unlock.
Robustness contract (docs/architecture.md): any exception is caught here and recorded as `status: failed` with a
one-line error; a non-finite loss gives `status: diverged`; a cell whose results.json is `completed` for the same
config hash is skipped; a cell another live process holds the lock of is skipped here (status `locked`, nothing
written); an interrupted endpoint resumes from its `last.ckpt`; a finished endpoint (its `final.pt` with a
matching training hash) is never retrained, unless that file cannot be read. Every file is written through a
unique temp file beside it and renamed (`results.atomic_open`).

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
import shutil
import signal
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

import landscape_sweep
from landscape_sweep.data import DataBundle, TensorLoader, load_data
from landscape_sweep.files import atomic_open
from landscape_sweep.landscape._core import evaluate, preserved
from landscape_sweep.models import build_model, num_params
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
from landscape_sweep.pipeline.threads import Registration, ThreadShare, apply_threads
from landscape_sweep.pipeline.tracking import Tracker
from landscape_sweep.results import (
    CellResult,
    Endpoint,
    read_json,
    read_results,
    results_path,
    write_json,
    write_results,
)
from landscape_sweep.training.callbacks import EpochCheckpoints, SameDirCheckpointIO, StopAtCriterion
from landscape_sweep.training.landscape_callback import SharpnessTrajectory
from landscape_sweep.training.module import EpochAsBatch, LitClassifier
from landscape_sweep.training.optim import optimizer_label
from landscape_sweep.training.progress import progress_callbacks

log = logging.getLogger(__name__)


def quiet_lightning() -> None:
    """Keep a sweep's console readable: no per-Trainer banners, tips or known-harmless warnings."""
    for name in (
        "pytorch_lightning.utilities.rank_zero",
        "lightning_fabric.utilities.rank_zero",
        "pytorch_lightning.trainer.connectors.checkpoint_connector",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*`validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*The `srun` command is available.*")


# keys of the `trainer` config that the cell handles itself (the others are pl.Trainer arguments)
CELL_TRAINER_KEYS = ("stop_at", "checkpoint_every_s", "threads")


class Diverged(RuntimeError):
    """An endpoint's training loss became non-finite."""


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line (the error field of results.json)."""
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


# --- building blocks -------------------------------------------------------------------------------------------
def load_cell_data(cfg: dict[str, Any]) -> DataBundle:
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


def new_model(cfg: dict[str, Any], data: DataBundle) -> torch.nn.Module:
    m = cfg["model"]
    return build_model(
        m["arch"], tuple(data.in_shape), data.num_classes, m["depth"], m["width"], norm=m["norm"],
        activation=m["activation"],
    )  # fmt: skip


def endpoint_dir(job_dir: Path, seed: int, data_seed: int | None = None, spawn: int | None = None) -> Path:
    """`checkpoints/seed<s>` (`seed<s>_data<d>` when the data seed differs; spawned children under `spawn<k>/`)."""
    base = job_dir / "checkpoints" if spawn is None else job_dir / "checkpoints" / f"spawn{spawn}"
    return base / seed_name(seed, data_seed)


def seed_name(seed: int, data_seed: int | None = None) -> str:
    """`seed<s>`, or `seed<s>_data<d>` when the data seed differs: an endpoint's dir name and metric prefix."""
    return f"seed{seed}" if data_seed in (None, seed) else f"seed{seed}_data{data_seed}"


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: the endpoint's seed (its label), the seeds of its initialisation and of its data order and
    augmentation, its checkpoint dir, and the checkpoint it starts from (a spawned child: the parent's
    `epoch<k>.ckpt`; None: a fresh initialisation)."""

    seed: int
    init_seed: int
    data_seed: int
    ck: Path
    start: Path | None = None
    spawn_epoch: int | None = None
    label: str | None = None  # the name in logs and metric prefixes (default from the seeds)

    @property
    def name(self) -> str:
        if self.label is not None:
            return self.label
        own = seed_name(self.seed, self.data_seed)
        return own if self.spawn_epoch is None else f"spawn{self.spawn_epoch}/{own}"

    @property
    def plain(self) -> bool:
        """A plain endpoint (named `seed<s>`): logged, labelled and named by its seed alone, as before."""
        return self.name == f"seed{self.seed}"

    @property
    def who(self) -> str:
        """The run in log lines and errors: `seed 3` for a plain endpoint (as before), else its name."""
        return f"seed {self.seed}" if self.plain else self.name

    @property
    def logger_key(self) -> int | str:
        """What `Tracker.lightning_logger` gets: the seed for a plain endpoint (as before), else the name."""
        return self.seed if self.plain else self.name


def independent_runs(cfg: dict[str, Any], job_dir: Path) -> list[Run]:
    """The runs of `endpoints.mode=independent`: endpoint i from init seed `seeds[i]`, data seed `data_seeds[i]`."""
    from landscape_sweep.pipeline.config import data_seeds

    seeds = list(cfg["endpoints"]["seeds"])
    return [Run(s, s, d, endpoint_dir(job_dir, s, d)) for s, d in zip(seeds, data_seeds(cfg["endpoints"]))]


def training_device(cfg: dict[str, Any]) -> torch.device:
    """Where the cell's in-memory data and models live: the device the Trainer will pick."""
    acc = str(cfg["trainer"].get("accelerator", "auto"))
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", 0)
    return torch.device("cpu")


def load_endpoint(cfg: dict[str, Any], data: DataBundle, path: Path) -> torch.nn.Module:
    """A trained endpoint from its `final.pt` state dict (weights_only), on the data's device."""
    device = data.train[0].device
    model = new_model(cfg, data).to(device)
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return model


def endpoint_metrics(model: torch.nn.Module, data: DataBundle, batch_size: int) -> dict[str, float]:
    """Train (un-augmented) and test loss/accuracy of a model in eval mode."""
    out = {}
    with preserved(model, "eval"):
        for split, (x, y) in (("train", data.train), ("test", data.test)):
            out[f"{split}_loss"], out[f"{split}_acc"] = evaluate(model, TensorLoader(x, y, batch_size=batch_size))
    return out


def final_weights(cfg: dict[str, Any]) -> str:
    """What an endpoint's final weights are: the SWA average when SWA is on, else the running weights."""
    return "swa_average" if cfg["optimizer"].get("swa", {}).get("enabled") else "running"


# --- one endpoint: reuse / resume → build → fit → finalise -----------------------------------------------------
def _reuse_finished(cfg: dict[str, Any], data: DataBundle, ck: Path, train_hash: str):
    """The finished endpoint (model, entry) of this training config, or None (also when `final.pt` is unreadable:
    then the endpoint is trained again, like after an unreadable `last.ckpt`)."""
    meta, path = read_json(ck / "final.json"), ck / "final.pt"
    if not (meta and meta.get("train_hash") == train_hash and path.is_file()):
        return None
    try:
        model = load_endpoint(cfg, data, path)
    except Exception as e:  # truncated or corrupt (a kill or a full disk mid-write)
        log.warning("ignoring unreadable endpoint %s (%s): training this endpoint again", path, one_line(e))
        # last.ckpt of a finished run is past its last epoch: resuming would skip the end of training (SWA's average)
        for name in ("final.json", "final.pt", "last.ckpt"):
            (ck / name).unlink(missing_ok=True)
        return None
    log.info("reusing finished endpoint %s", path)
    return model, Endpoint.from_dict(meta["entry"])


def stamp(ck: Path, train_hash: str) -> None:
    """Make `ck` the checkpoint dir of this training config: a dir stamped with another one is emptied first."""
    found = read_json(ck / "train_hash.json")
    if found is None or found.get("train_hash") != train_hash:
        shutil.rmtree(ck, ignore_errors=True)  # checkpoints of another config: never resume from them
        write_json(ck / "train_hash.json", {"train_hash": train_hash})


def _resume_point(ck: Path, train_hash: str, max_epochs: int) -> str | None:
    """`last.ckpt` to resume from, if it belongs to this training config, loads and is unfinished.

    Stale state is removed. A checkpoint of a finished run (killed after its last epoch, before `final.pt`) is
    not resumed: Lightning would skip the end of fit (the SWA average), so the endpoint trains again (same seed,
    same result).
    """
    stamp(ck, train_hash)
    path = ck / "last.ckpt"
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated (killed mid-write): start afresh
        log.warning("ignoring unreadable checkpoint %s (%s): starting this endpoint afresh", path, one_line(e))
        path.unlink()
        return None
    stopped = any(isinstance(v, dict) and v.get("reached_epoch") for v in (state.get("callbacks") or {}).values())
    if state.get("epoch", -1) + 1 >= max_epochs or stopped:
        log.info("%s is of a finished run without final.pt: training this endpoint again", path)
        path.unlink()
        return None
    return str(path)


def _trainer(cfg: dict[str, Any], callbacks: list[pl.Callback], logger: Any, job_dir: Path, val: bool) -> pl.Trainer:
    kw = {k: v for k, v in cfg["trainer"].items() if k not in CELL_TRAINER_KEYS}
    plugins = [*(kw.pop("plugins", None) or []), SameDirCheckpointIO()]  # checkpoints written beside their place
    if "SLURM_JOB_ID" in os.environ:  # submitit owns requeueing; Lightning's own SLURM requeue must not fight it
        from pytorch_lightning.plugins.environments import SLURMEnvironment

        plugins.append(SLURMEnvironment(auto_requeue=False))
    kw["plugins"] = plugins
    return pl.Trainer(
        **kw, callbacks=callbacks, logger=logger, default_root_dir=str(job_dir), limit_val_batches=None if val else 0,
        enable_checkpointing=False,  # EpochCheckpoints writes last.ckpt / epoch<e>.ckpt itself
    )  # fmt: skip


def _build(cfg: dict[str, Any], data: DataBundle, run: Run, ad: measures.AnalysisData, *, stop: bool = True, keep=()):
    """Model, LightningModule, loaders and callbacks of one training run: the model from `run.init_seed`, the
    data order, augmentation and any later randomness from `run.data_seed`. `stop`: with `trainer.stop_at`;
    `keep`: more epochs whose full state is kept as `epoch<e>.ckpt` (a spawning parent's spawn epochs)."""
    pl.seed_everything(run.init_seed, workers=True, verbose=False)
    d, landscape, ck, name = cfg["data"], cfg["landscape"], run.ck, run.name
    train = TensorLoader(
        *data.train, batch_size=d["batch_size"], shuffle=True, seed=run.data_seed, augment=data.augment
    )
    val = TensorLoader(*data.val, batch_size=d["eval_batch_size"]) if data.val is not None else None
    model = new_model(cfg, data)
    if run.data_seed != run.init_seed:  # (equal seeds: exactly the global RNG stream of one seed, as before)
        pl.seed_everything(run.data_seed, workers=True, verbose=False)
    module = LitClassifier(
        model, cfg["optimizer"], max_epochs=cfg["trainer"]["max_epochs"], steps_per_epoch=len(train),
        log_prefix=f"{name}/",
    )  # fmt: skip

    def point(model: torch.nn.Module, epoch: int) -> dict[str, Any]:
        return measures.trajectory_point(
            model, ad.probe, landscape["sharpness"], cfg["seed"], epoch=epoch, weights="running"
        )

    trajectory = SharpnessTrajectory(point, landscape["checkpoint_epochs"], prefix=f"{name}/")
    criterion = (cfg["trainer"].get("stop_at") or {}) if stop else {}
    stopper = StopAtCriterion(**criterion, prefix=f"{name}/")
    # the trajectory is measured before the epoch's checkpoint is written, so the checkpoint holds it
    every_s = cfg["trainer"].get("checkpoint_every_s", 0)
    kept = [e for e in (*landscape["checkpoint_epochs"], *keep) if e > 0]
    callbacks: list[pl.Callback] = [trajectory, stopper, EpochCheckpoints(ck, kept, every_s)]
    callbacks += [*progress_callbacks(cfg["trainer"], run.seed, name=None if run.plain else name), timing.FirstStep()]
    if cfg["trainer"].get("threads", "auto") == "auto":
        callbacks.append(ThreadShare("auto"))
    return module, train, val, callbacks


def _finalise(cfg, data, module, trainer, callbacks, run: Run, job_dir: Path, seconds: float) -> Endpoint:
    """The endpoint's record and `final.pt`/`final.json` (written last: they mark the endpoint finished)."""
    trajectory, stop, ck = callbacks[0], callbacks[1], run.ck
    entry = Endpoint(
        seed=run.seed, init_seed=run.init_seed, data_seed=run.data_seed, spawn_epoch=run.spawn_epoch,
        checkpoint=str((ck / "final.pt").relative_to(job_dir)), epochs=trainer.current_epoch,
        train_time_s=seconds, stop=stop.record() if stop.criterion else None, trajectory=trajectory.trajectory,
        **endpoint_metrics(module.model, data, cfg["data"]["eval_batch_size"]),
    )  # fmt: skip
    with atomic_open(ck / "final.pt", "wb") as f:
        torch.save(module.model.state_dict(), f)
    write_json(ck / "final.json", {"train_hash": config_hash(cfg, training_only=True), "entry": entry})
    return entry


def train_endpoint(
    cfg: dict[str, Any], data: DataBundle, seed: int | Run, job_dir: Path, tracker: Tracker, ad: measures.AnalysisData
) -> tuple[torch.nn.Module, Endpoint]:
    """Train (or resume, or reuse) one endpoint: of `seed` (init and data seed `seed`) or of a `Run`; returns its
    final model and its record. A run with a `start` checkpoint (a spawned child) begins from it unless its own
    `last.ckpt` is further."""
    run = seed if isinstance(seed, Run) else Run(seed, seed, seed, endpoint_dir(job_dir, seed))
    ck, train_hash, name = run.ck, config_hash(cfg, training_only=True), run.name
    finished = _reuse_finished(cfg, data, ck, train_hash)
    if finished is not None:
        return finished
    resume = _resume_point(ck, train_hash, cfg["trainer"]["max_epochs"])
    module, train, val, callbacks = _build(cfg, data, run, ad)
    trainer = _trainer(cfg, callbacks, tracker.lightning_logger(run.logger_key), job_dir, val is not None)
    if resume:
        log.info("%s: resuming from %s", run.who, resume)
    elif run.start is not None:
        resume = str(run.start)
        log.info("%s: training in %s from %s", run.who, ck, run.start)
    else:
        log.info("%s: training in %s", run.who, ck)
    t0 = time.perf_counter()
    try:
        # weights_only: a checkpoint is data (also under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, which overrides only an
        # unset argument), as `_resume_point` checked it
        trainer.fit(
            module, train_dataloaders=EpochAsBatch(train), val_dataloaders=val, ckpt_path=resume, weights_only=True
        )
    except SIGTERMException:  # Lightning stops at the epoch's end (last.ckpt written): exit as killed by SIGTERM
        log.warning("%s: SIGTERM after epoch %d; %s holds it, a rerun resumes", run.who, trainer.current_epoch,
                    ck / "last.ckpt")  # fmt: skip
        raise SystemExit(128 + signal.SIGTERM) from None
    if module.diverged:
        raise Diverged(f"{run.who}: non-finite training loss at epoch {trainer.current_epoch}")
    entry = _finalise(cfg, data, module, trainer, callbacks, run, job_dir, time.perf_counter() - t0)
    tracker.log({f"{name}/final/{k}": getattr(entry, k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")})
    return module.model, entry


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
    from omegaconf import OmegaConf

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
    from landscape_sweep.pipeline.parallel import train_endpoints  # endpoints.parallel: none | processes | vmap

    spawned = None
    if config["endpoints"].get("mode", "independent") == "spawn":  # the parent, then the children of each k
        spawned = spawn.train_spawned(config, data, job_dir, tracker, ad)
        trained = spawned[max(spawned)]  # the last spawn epoch's children are the cell's endpoints
    else:
        trained = train_endpoints(config, data, job_dir, tracker, ad)
    models = [m for m, _ in trained]
    result.endpoints = [e for _, e in trained]
    result.cell = cell_info(config, data, models[0])
    result.timing_s["train"] = time.perf_counter() - t0
    tracker.summary_of(result)
    result = analyse(config, data, models, result, ad)
    return result if spawned is None else spawn.finish(result, spawned, ad, config)

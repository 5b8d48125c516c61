"""One training run (an endpoint, a spawned child, the spawning parent): the toolkit every endpoint scheduler uses.

`train_endpoint`: reuse a finished endpoint (`final.pt` + `final.json` of this training config), else resume from
`last.ckpt` or start → build (model, LitClassifier, loaders, callbacks) → fit with Lightning → finalise (`Endpoint`
record, `final.pt`). The schedulers (`parallel.py`: none/processes/vmap, `ensemble_fit.py`, `spawn.py`) import
this module; the cell (`cell.py`) sits above them. A finished endpoint is never retrained, unless its `final.pt`
cannot be read; an interrupted one resumes from its `last.ckpt`; a non-finite loss raises `Diverged`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.exceptions import SIGTERMException

from landscape_sweep.data import DataBundle, TensorLoader
from landscape_sweep.files import atomic_open
from landscape_sweep.landscape import evaluate, preserved
from landscape_sweep.models import build_model
from landscape_sweep.pipeline import measures, timing
from landscape_sweep.pipeline.config import config_hash, data_seeds
from landscape_sweep.pipeline.threads import ThreadShare
from landscape_sweep.pipeline.tracking import Tracker
from landscape_sweep.results import Endpoint, read_json, write_json
from landscape_sweep.training.callbacks import EpochCheckpoints, SameDirCheckpointIO, StopAtCriterion
from landscape_sweep.training.landscape_callback import SharpnessTrajectory
from landscape_sweep.training.module import EpochAsBatch, LitClassifier
from landscape_sweep.training.progress import progress_callbacks

log = logging.getLogger(__name__)

# keys of the `trainer` config that the cell handles itself (the others are pl.Trainer arguments)
CELL_TRAINER_KEYS = ("stop_at", "checkpoint_every_s", "threads")


class Diverged(RuntimeError):
    """An endpoint's training loss became non-finite."""


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line (the error field of results.json)."""
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


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


# --- what a run is ---------------------------------------------------------------------------------------------
def seed_name(seed: int, data_seed: int | None = None) -> str:
    """`seed<s>`, or `seed<s>_data<d>` when the data seed differs: an endpoint's dir name and metric prefix."""
    return f"seed{seed}" if data_seed in (None, seed) else f"seed{seed}_data{data_seed}"


def endpoint_dir(job_dir: Path, seed: int, data_seed: int | None = None, spawn: int | None = None) -> Path:
    """`checkpoints/seed<s>` (`seed<s>_data<d>` when the data seed differs; spawned children under `spawn<k>/`)."""
    base = job_dir / "checkpoints" if spawn is None else job_dir / "checkpoints" / f"spawn{spawn}"
    return base / seed_name(seed, data_seed)


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
    seeds = list(cfg["endpoints"]["seeds"])
    return [Run(s, s, d, endpoint_dir(job_dir, s, d)) for s, d in zip(seeds, data_seeds(cfg["endpoints"]))]


def training_device(cfg: dict[str, Any]) -> torch.device:
    """Where the cell's in-memory data and models live: the device the Trainer will pick."""
    acc = str(cfg["trainer"].get("accelerator", "auto"))
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", 0)
    return torch.device("cpu")


# --- models and their files ------------------------------------------------------------------------------------
def new_model(cfg: dict[str, Any], data: DataBundle) -> torch.nn.Module:
    """A freshly initialised model of the config (from the global RNG: seed it first) for the data's shapes."""
    m = cfg["model"]
    return build_model(
        m["arch"], tuple(data.in_shape), data.num_classes, m["depth"], m["width"], norm=m["norm"],
        activation=m["activation"],
    )  # fmt: skip


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


# --- reuse / resume --------------------------------------------------------------------------------------------
def reuse_finished(
    cfg: dict[str, Any], data: DataBundle, ck: Path, train_hash: str
) -> tuple[torch.nn.Module, Endpoint] | None:
    """The finished endpoint (model, entry) of this training config in `ck`, or None (also when `final.pt` is
    unreadable: then the endpoint is trained again, like after an unreadable `last.ckpt`)."""
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


def resume_point(ck: Path, train_hash: str, max_epochs: int) -> str | None:
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


# --- build → fit → finalise ------------------------------------------------------------------------------------
def make_trainer(
    cfg: dict[str, Any], callbacks: list[pl.Callback], logger: Any, job_dir: Path, val: bool
) -> pl.Trainer:
    """The run's `pl.Trainer`: the config's `trainer` keys (less the cell's own), checkpoints beside their place,
    no validation without a validation split."""
    kw = {k: v for k, v in cfg["trainer"].items() if k not in CELL_TRAINER_KEYS}
    plugins = [*(kw.pop("plugins", None) or []), SameDirCheckpointIO()]  # checkpoints written beside their place
    if "SLURM_JOB_ID" in os.environ:  # submitit owns requeueing; Lightning's own SLURM requeue must not fight it
        plugins.append(SLURMEnvironment(auto_requeue=False))
    kw["plugins"] = plugins
    return pl.Trainer(
        **kw, callbacks=callbacks, logger=logger, default_root_dir=str(job_dir), limit_val_batches=None if val else 0,
        enable_checkpointing=False,  # EpochCheckpoints writes last.ckpt / epoch<e>.ckpt itself
    )  # fmt: skip


def build_run(
    cfg: dict[str, Any],
    data: DataBundle,
    run: Run,
    ad: measures.AnalysisData,
    *,
    stop: bool = True,
    keep: Iterable[int] = (),
) -> tuple[LitClassifier, TensorLoader, TensorLoader | None, list[pl.Callback]]:
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


def fit(
    trainer: pl.Trainer, module: LitClassifier, train: TensorLoader, val: TensorLoader | None, resume: str | None,
    run: Run,
) -> None:  # fmt: skip
    """Lightning's fit of one run (from `resume`, a checkpoint, when given). On SIGTERM Lightning stops at the
    epoch's end with `last.ckpt` written: exit as killed by SIGTERM (a rerun resumes). A non-finite loss: `Diverged`."""
    try:
        # weights_only: a checkpoint is data (also under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, which overrides only an
        # unset argument), as `resume_point` checked it
        trainer.fit(
            module, train_dataloaders=EpochAsBatch(train), val_dataloaders=val, ckpt_path=resume, weights_only=True
        )
    except SIGTERMException:
        log.warning("%s: SIGTERM after epoch %d; %s holds it, a rerun resumes", run.who, trainer.current_epoch,
                    run.ck / "last.ckpt")  # fmt: skip
        raise SystemExit(128 + signal.SIGTERM) from None
    if module.diverged:
        raise Diverged(f"{run.who}: non-finite training loss at epoch {trainer.current_epoch}")


def finalise(
    cfg: dict[str, Any], data: DataBundle, module: LitClassifier, trainer: pl.Trainer, callbacks: list[pl.Callback],
    run: Run, job_dir: Path, seconds: float,
) -> Endpoint:  # fmt: skip
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
    finished = reuse_finished(cfg, data, ck, train_hash)
    if finished is not None:
        return finished
    resume = resume_point(ck, train_hash, cfg["trainer"]["max_epochs"])
    module, train, val, callbacks = build_run(cfg, data, run, ad)
    trainer = make_trainer(cfg, callbacks, tracker.lightning_logger(run.logger_key), job_dir, val is not None)
    if resume:
        log.info("%s: resuming from %s", run.who, resume)
    elif run.start is not None:
        resume = str(run.start)
        log.info("%s: training in %s from %s", run.who, ck, run.start)
    else:
        log.info("%s: training in %s", run.who, ck)
    t0 = time.perf_counter()
    fit(trainer, module, train, val, resume, run)
    entry = finalise(cfg, data, module, trainer, callbacks, run, job_dir, time.perf_counter() - t0)
    tracker.log({f"{name}/final/{k}": getattr(entry, k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")})
    return module.model, entry

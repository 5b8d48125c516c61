"""One cell = one Hydra job: load data once, train each endpoint seed, analyse, write results.json.

Robustness contract (DESIGN.md, data flow of one cell): any exception is caught here and recorded as
`status: failed` with a one-line error; a non-finite loss gives `status: diverged`; a cell whose results.json
is `completed` for the same config hash is skipped; an interrupted endpoint resumes from its `last.ckpt`;
a finished endpoint (its `final.pt` with a matching training hash) is never retrained.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

import landscape_sweep
from landscape_sweep.data import DataBundle, TensorLoader, load_data
from landscape_sweep.landscape._core import evaluate, preserved
from landscape_sweep.models import build_model, num_params
from landscape_sweep.pipeline.analysis import analysis_subset, analyze_cell, batched
from landscape_sweep.pipeline.artifacts import write_cell_artifacts
from landscape_sweep.pipeline.config import config_hash, validate
from landscape_sweep.pipeline.tracking import Tracker
from landscape_sweep.results import SCHEMA, read_json, results_path, write_json
from landscape_sweep.training.callbacks import EpochCheckpoints
from landscape_sweep.training.landscape_callback import SharpnessTrajectory
from landscape_sweep.training.module import LitClassifier
from landscape_sweep.training.optim import optimizer_label

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


class Diverged(RuntimeError):
    """An endpoint's training loss became non-finite."""


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line (the error field of results.json)."""
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def load_cell_data(c: dict[str, Any]) -> DataBundle:
    d = c["data"]
    return load_data(
        d["name"],
        d["root"],
        train_size=d["train_size"],
        label_noise=d["label_noise"],
        val_size=d["val_size"],
        seed=d["seed"],
        download=d["download"],
        augment=d["augment"],
        **(d.get("options") or {}),
    )


def new_model(c: dict[str, Any], data: DataBundle) -> torch.nn.Module:
    m = c["model"]
    return build_model(
        m["arch"],
        tuple(data.in_shape),
        data.num_classes,
        m["depth"],
        m["width"],
        norm=m["norm"],
        activation=m["activation"],
    )


def endpoint_dir(job_dir: Path, seed: int) -> Path:
    return job_dir / "checkpoints" / f"seed{seed}"


def training_device(c: dict[str, Any]) -> torch.device:
    """Where the cell's in-memory data and models live: the device the Trainer will pick."""
    acc = str(c["trainer"].get("accelerator", "auto"))
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", 0)
    return torch.device("cpu")


def _trainer_kwargs(c: dict[str, Any]) -> dict[str, Any]:
    kw = dict(c["trainer"])
    if "SLURM_JOB_ID" in os.environ:  # submitit owns requeueing; Lightning's own SLURM requeue must not fight it
        from pytorch_lightning.plugins.environments import SLURMEnvironment

        kw["plugins"] = [SLURMEnvironment(auto_requeue=False)]
    return kw


def load_endpoint(c: dict[str, Any], data: DataBundle, path: Path) -> torch.nn.Module:
    """A trained endpoint from its `final.pt` state dict (weights_only), on the data's device."""
    device = data.train[0].device
    model = new_model(c, data).to(device)
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return model


def _resumable(path: Path) -> str | None:
    """`path` if it holds a loadable checkpoint; a truncated one (killed mid-write) is removed."""
    if not path.is_file():
        return None
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        log.warning("ignoring unreadable checkpoint %s (%s): starting this endpoint afresh", path, one_line(e))
        path.unlink()
        return None
    return str(path)


def train_endpoint(
    c: dict[str, Any],
    data: DataBundle,
    seed: int,
    job_dir: Path,
    tracker: Tracker,
    train_hash: str,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train (or resume, or reuse) the endpoint of `seed`; returns its final model and its results entry."""
    ck = endpoint_dir(job_dir, seed)
    meta = read_json(ck / "final.json")
    if meta and meta.get("train_hash") == train_hash and (ck / "final.pt").is_file():
        log.info("seed %d: reusing finished endpoint %s", seed, ck / "final.pt")
        return load_endpoint(c, data, ck / "final.pt"), meta["entry"]

    stamp = read_json(ck / "train_hash.json")
    if stamp is None or stamp.get("train_hash") != train_hash:
        shutil.rmtree(ck, ignore_errors=True)  # stale checkpoints of another config: never resume from them
        write_json(ck / "train_hash.json", {"train_hash": train_hash})
    resume = _resumable(ck / "last.ckpt")

    pl.seed_everything(seed, workers=True, verbose=False)
    model = new_model(c, data)
    d, epochs = c["data"], c["trainer"]["max_epochs"]
    train = TensorLoader(*data.train, batch_size=d["batch_size"], shuffle=True, seed=seed, augment=data.augment)
    val = TensorLoader(*data.val, batch_size=d["eval_batch_size"]) if data.val is not None else None
    module = LitClassifier(
        model, c["optimizer"], max_epochs=epochs, steps_per_epoch=len(train), log_prefix=f"seed{seed}/"
    )
    land = c["landscape"]
    trajectory = SharpnessTrajectory(
        batched(analysis_subset(data, land["analysis_size"], c["seed"]), d["eval_batch_size"]),
        land["checkpoint_epochs"],
        prefix=f"seed{seed}/",
        tol=land["sharpness"]["tol"],
        max_iter=land["sharpness"]["max_iter"],
        trace_probes=max(2, land["sharpness"]["trace_probes"] // 5),
        seed=c["seed"],
    )
    # the trajectory is measured before the epoch's checkpoint is written, so the checkpoint holds it
    callbacks: list[pl.Callback] = [
        trajectory,
        EpochCheckpoints(ck, land["checkpoint_epochs"]),
    ]
    trainer = pl.Trainer(
        **_trainer_kwargs(c),
        callbacks=callbacks,
        logger=tracker.lightning_logger(seed),
        default_root_dir=str(job_dir),
        limit_val_batches=None if val else 0,
        enable_checkpointing=False,  # EpochCheckpoints writes last.ckpt / epoch<e>.ckpt itself
    )
    t0 = time.perf_counter()
    if resume:
        log.info("seed %d: resuming from %s", seed, resume)
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val, ckpt_path=resume)
    if getattr(module, "diverged", False):
        raise Diverged(f"seed {seed}: non-finite training loss at epoch {trainer.current_epoch}")
    model = module.model

    entry = {
        "seed": seed,
        "checkpoint": str((ck / "final.pt").relative_to(job_dir)),
        "epochs": trainer.current_epoch,
        "train_time_s": time.perf_counter() - t0,
    }
    entry.update(endpoint_metrics(model, data, d["eval_batch_size"]))
    entry.update({"sharpness": {}, "trajectory": trajectory.trajectory})
    tracker.log({f"seed{seed}/final/{k}": entry[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")})
    tmp = ck / "final.pt.tmp"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, ck / "final.pt")
    write_json(ck / "final.json", {"train_hash": train_hash, "entry": entry})
    return model, entry


def endpoint_metrics(model: torch.nn.Module, data: DataBundle, batch_size: int) -> dict[str, float]:
    """Train (un-augmented) and test loss/accuracy of a model in eval mode."""
    out = {}
    with preserved(model, "eval"):
        for split, (x, y) in (("train", data.train), ("test", data.test)):
            loss, acc = evaluate(model, TensorLoader(x, y, batch_size=batch_size))
            out[f"{split}_loss"], out[f"{split}_acc"] = loss, acc
    return out


def cell_info(c: dict[str, Any], data: DataBundle | None, model: torch.nn.Module | None) -> dict[str, Any]:
    return {
        "dataset": c["data"]["name"],
        "arch": c["model"]["arch"],
        "depth": c["model"]["depth"],
        "width": c["model"]["width"],
        "norm": c["model"]["norm"],
        "optimizer": optimizer_label(c["optimizer"]),
        "num_params": num_params(model) if model is not None else None,
        "train_size": int(data.train[1].shape[0]) if data is not None else c["data"]["train_size"],
        "label_noise": c["data"]["label_noise"],
        "seeds": list(c["endpoints"]["seeds"]),
    }


def _summary(entries: list[dict[str, Any]]) -> dict[str, float]:
    if not entries:
        return {}
    mean = {k: sum(e[k] for e in entries) / len(entries) for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    return {
        "train/loss": mean["train_loss"],
        "train/acc": mean["train_acc"],
        "test/loss": mean["test_loss"],
        "test/acc": mean["test_acc"],
        "gen_gap": mean["train_acc"] - mean["test_acc"],
        "gen_gap_loss": mean["test_loss"] - mean["train_loss"],
    }


def record_analysis(
    c: dict[str, Any],
    data: DataBundle,
    models: list[torch.nn.Module],
    result: dict[str, Any],
    job_dir: Path,
    tracker: Tracker,
) -> None:
    """Analyse the trained endpoints into `result` (sharpness, connectivity), write the cell's files, log them."""
    t1 = time.perf_counter()
    result["connectivity"] = analyze_cell(c, data, models, result["endpoints"])
    result["timing_s"]["analysis"] = time.perf_counter() - t1
    tracker.log_cell(result, write_cell_artifacts(job_dir, result))


def run_cell(cfg: Any, job_dir: str | Path, *, group: str = "default") -> dict[str, Any]:
    """Run one cell end to end and return its results dict (also written to `<job_dir>/results.json`)."""
    job_dir = Path(job_dir)
    quiet_lightning()
    c = validate(cfg)
    chash, thash = config_hash(c), config_hash(c, training_only=True)
    prev = read_json(results_path(job_dir))
    if prev and prev.get("status") == "completed" and prev.get("config_hash") == chash:
        log.info("cell already completed (config hash %s): skipping", chash)
        return prev

    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "status": None,
        "error": None,
        "config_hash": chash,
        "train_hash": thash,
        "config": c,
        "cell": cell_info(c, None, None),
        "endpoints": [],
        "connectivity": [],
        "timing_s": {"train": 0.0, "analysis": 0.0},
        "versions": {
            "torch": torch.__version__,
            "pytorch_lightning": pl.__version__,
            "landscape_sweep": landscape_sweep.__version__,
            "python": platform.python_version(),
        },
    }
    tracker: Tracker | None = None
    try:
        tracker = Tracker(c, job_dir, group=group, job_type=result["cell"]["optimizer"], name=job_dir.name)
        data = load_cell_data(c).to(training_device(c))
        models = []
        for seed in c["endpoints"]["seeds"]:
            model, entry = train_endpoint(c, data, seed, job_dir, tracker, thash)
            models.append(model)
            result["endpoints"].append(entry)
        result["cell"] = cell_info(c, data, models[0])
        result["timing_s"]["train"] = time.perf_counter() - t0
        tracker.summary({**_summary(result["endpoints"]), "num_params": result["cell"]["num_params"]})
        record_analysis(c, data, models, result, job_dir, tracker)
        result["status"] = "completed"
    except Diverged as e:
        result.update(status="diverged", error=one_line(e))
    except Exception as e:  # the job boundary: record, never crash the sweep
        log.error("cell failed: %s\n%s", one_line(e), traceback.format_exc())
        result.update(status="failed", error=one_line(e))
    finally:
        if result["status"] is not None:  # an interrupt (SIGTERM/Ctrl-C) leaves no results: the cell resumes later
            result["timing_s"]["total"] = time.perf_counter() - t0
            write_json(results_path(job_dir), result)
        if tracker is not None:
            tracker.close(exit_code=0 if result["status"] == "completed" else 1)
    return result

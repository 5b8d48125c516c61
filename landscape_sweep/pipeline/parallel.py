"""How a cell's K endpoints are trained: `endpoints.parallel` = none | processes | vmap.

- `none`: one after another in this process, with all its threads (`endpoint.train_endpoint` per seed).
- `processes`: one worker process per unfinished endpoint (at most one per core), each with one torch thread,
  each running the same `endpoint.train_endpoint` (so final.pt/final.json/last.ckpt and resuming are unchanged);
  this process then reuses the finished endpoints. A worker records what it would have logged (its Lightning
  logger's metrics, the tracker's final metrics) and this process replays it, seed by seed, into the cell's
  tracker. A worker's exception is re-raised here (same type and message), so a failure or divergence gives the
  same status/error as `none`; the first failing seed in seed order wins, as in `none`.
- `vmap`: one vectorised ensemble (`ensemble_fit.train_ensemble`).

Workers start with `spawn` (`start_method`): forked workers were seen to deadlock (futex) after the parent had used
torch's thread pool, and a CUDA context does not survive fork.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import pickle
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.loggers import Logger
from torch import nn

from landscape_sweep.data import DataBundle
from landscape_sweep.pipeline import measures
from landscape_sweep.pipeline.config import config_hash
from landscape_sweep.pipeline.endpoint import Run, independent_runs, quiet_lightning, train_endpoint, training_device
from landscape_sweep.pipeline.ensemble_fit import train_ensemble
from landscape_sweep.pipeline.threads import PIN_ENV, auto_threads
from landscape_sweep.pipeline.tracking import Tracker
from landscape_sweep.results import Endpoint, read_json

log = logging.getLogger(__name__)


def parallel_mode(config: dict[str, Any]) -> str:
    return (config.get("endpoints") or {}).get("parallel", "none")


def train_endpoints(
    config: dict[str, Any], data: DataBundle, job_dir: Path, tracker: Tracker, ad: measures.AnalysisData
) -> list[tuple[nn.Module, Endpoint]]:
    """Every endpoint of the cell (model, record), in seed order, trained as `endpoints.parallel` says."""
    runs, mode = independent_runs(config, job_dir), parallel_mode(config)
    if mode == "vmap":
        return train_ensemble(config, data, job_dir, tracker, ad)
    if mode == "processes":
        train_in_workers(config, data, job_dir, tracker, unfinished(config, runs))
    return [train_endpoint(config, data, run, job_dir, tracker, ad) for run in runs]


def unfinished(config: dict[str, Any], runs: list[Run]) -> list[Run]:
    """Runs without a finished endpoint (`final.json` of this training config beside a `final.pt`)."""
    train_hash = config_hash(config, training_only=True)

    def done(ck: Path) -> bool:
        meta = read_json(ck / "final.json")
        return bool(meta and meta.get("train_hash") == train_hash and (ck / "final.pt").is_file())

    return [r for r in runs if not done(r.ck)]


# --- processes --------------------------------------------------------------------------------------------------
class RecordingLogger(Logger):
    """A Lightning logger that keeps every `log_metrics` call, to be replayed into the cell's real logger."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self.calls: list[tuple[dict[str, float], int | None]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return f"seed{self.seed}"

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.calls.append(({k: float(v) for k, v in metrics.items()}, step))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


class RecordingTracker:
    """What `endpoint.train_endpoint` needs of a Tracker, in a worker: a logger per seed and `log`, both recorded."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind = kind
        self.logger = RecordingLogger(seed)
        self.logged: list[dict[str, Any]] = []

    def lightning_logger(self, seed: int) -> Logger | bool:
        return self.logger if self.kind != "none" else False

    def log(self, metrics: dict[str, Any]) -> None:
        self.logged.append(dict(metrics))

    def record(self) -> dict[str, Any]:
        return {"metrics": self.logger.calls, "logged": self.logged}


def replay(tracker: Tracker, seed: int | str, record: dict[str, Any]) -> None:
    """Send what a worker recorded for `seed` to the cell's tracker, as `none` would have logged it."""
    if record["metrics"]:
        logger = tracker.lightning_logger(seed)
        if logger:
            for metrics, step in record["metrics"]:
                logger.log_metrics(metrics, step)
            logger.save()
            logger.finalize("success")
    for metrics in record["logged"]:
        tracker.log(metrics)


def start_method(device: torch.device) -> str:
    """spawn everywhere: fork is cheaper (~0.1 s vs ~3-5 s of imports a worker) but forked workers were seen to
    hang on a futex after the parent had used torch's threads (2-core CPU), and fork breaks CUDA."""
    return "spawn"


def worker_count(todo: int) -> int:
    """One worker per endpoint, at most this process's share of the cores (`threads.auto_threads`)."""
    return max(1, min(todo, auto_threads()))


_WORKER: dict[str, Any] = {}


def _init_worker(config: dict[str, Any], data: DataBundle, job_dir: str) -> None:
    """A worker's state: one torch thread, the cell's data on its training device, the analysis probes."""
    os.environ[PIN_ENV] = "1"  # trainer.threads=auto keeps a worker at its one thread
    torch.set_num_threads(1)
    quiet_lightning()
    data = data.to(training_device(config))
    _WORKER.update(config=config, data=data, job_dir=Path(job_dir), ad=measures.analysis_data(config, data))


def _portable(exc: BaseException) -> tuple[bytes | None, str, str, str]:
    """An exception as (pickle if it round-trips, type name, message, traceback) for the parent."""
    tb = "".join(traceback.format_exception(exc))
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
    except Exception:
        blob = None
    return blob, type(exc).__name__, str(exc), tb


def _rebuild(blob: bytes | None, name: str, message: str) -> BaseException:
    """The worker's exception: unpickled, else a RuntimeError subclass of the same name (same one-line error)."""
    if blob is not None:
        return pickle.loads(blob)
    return type(name, (RuntimeError,), {})(message)


def _train_one(run: Run) -> tuple[dict[str, Any], tuple | None]:
    """Train a run's endpoint in a worker; returns what it logged and its exception (None: finished)."""
    w = _WORKER
    tracker = RecordingTracker(w["config"]["logger"]["name"], run.seed)
    try:
        train_endpoint(w["config"], w["data"], run, w["job_dir"], tracker, w["ad"])  # type: ignore[arg-type]
        return tracker.record(), None
    except Exception as e:
        return tracker.record(), _portable(e)


def train_in_workers(
    config: dict[str, Any], data: DataBundle, job_dir: Path, tracker: Tracker, runs: list[Run]
) -> None:
    """Train the endpoints of `runs` in worker processes (their final.pt written); re-raise the first
    failure."""
    if not runs:
        return
    seeds = [r.seed for r in runs]
    device = data.train[0].device
    ctx = multiprocessing.get_context(start_method(device))
    n = worker_count(len(seeds))
    log.info("training seeds %s in %d worker processes (%s)", seeds, n, ctx.get_start_method())
    # the OOD sets are only measured by the analysis, in this process
    init = (config, dataclasses.replace(data, ood={}).to(torch.device("cpu")), str(job_dir))
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
        futures = [pool.submit(_train_one, run) for run in runs]
        outcomes = [f.result() for f in futures]
    for run, (record, error) in zip(runs, outcomes):
        replay(tracker, run.logger_key, record)
        if error is not None:
            blob, name, message, tb = error
            log.info("%s failed in its worker:\n%s", run.name, tb)
            raise _rebuild(blob, name, message)

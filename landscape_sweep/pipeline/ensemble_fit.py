"""`endpoints.parallel=vmap`: the cell's unfinished endpoints trained as one vectorised ensemble.

Per endpoint, everything is as in `endpoint.train_endpoint`: the init (`pl.seed_everything(seed)` then the model), the
data order and augmentation (the seed's TensorLoader), the optimizer, LR schedule, SAM/ASAM, gradient clipping, BN
statistics and SWA (training/ensemble.py), the trajectory at `landscape.checkpoint_epochs`, `trainer.stop_at`, the
per-epoch metrics `seed<k>/train/loss|acc`, `seed<k>/val/...`, `seed<k>/sharpness/...`, `seed<k>/lr` sent to the
seed's Lightning logger, `final.pt`/`final.json` and the `seed<k>/final/...` metrics. Final weights match `none`
within float rounding (batched matmuls); an endpoint that stops early is finalised at its stop epoch and left out
of the ensemble's results from then on.

Checkpoints: after each epoch every training endpoint writes `vmap_last.pt` (and `vmap_epoch<e>.pt` at checkpoint
epochs) beside its Lightning files: model, its slice of the optimizer state, schedules, SWA average, stop state and
trajectory. A resumed cell continues from them when every unfinished endpoint has one of the same epoch, else it
trains those endpoints afresh. The Trainer settings the loop does not implement are refused by config validation.
A non-finite loss marks that endpoint diverged (the others go on, models never mix); the cell then fails like
`none` would: `Diverged` for the first diverged seed in seed order, after the seeds before it were finalised.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import SWALR, update_bn

from landscape_sweep.data import DataBundle, TensorLoader
from landscape_sweep.files import atomic_open
from landscape_sweep.pipeline import measures
from landscape_sweep.pipeline.config import config_hash
from landscape_sweep.pipeline.endpoint import Diverged, endpoint_dir, endpoint_metrics, new_model, reuse_finished, stamp
from landscape_sweep.pipeline.tracking import Tracker
from landscape_sweep.results import Endpoint, write_json
from landscape_sweep.training.ensemble import Ensemble, swa_average_
from landscape_sweep.training.optim import base_optimizer_kwargs, build_scheduler, resolve_cfg, swa_start_epoch

log = logging.getLogger(__name__)
CHECKPOINT = "vmap_last.pt"


@dataclass
class _Seed:
    """One endpoint's bookkeeping in the ensemble."""

    seed: int
    index: int
    loader: TensorLoader
    ck: Path
    logger: Any
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    reached_epoch: int | None = None
    state: str = "training"  # training | finished | diverged
    diverged_epoch: int | None = None


def _plain_state(state: dict[str, Any]) -> dict[str, Any]:
    """A scheduler's state without callables (weights_only checkpoints; the constructor restores them)."""
    return {k: v for k, v in state.items() if not callable(v)}


def _slice_optimizer(opt: torch.optim.Optimizer, k: int) -> dict[str, Any]:
    """Model k's part of the stacked optimizer's state_dict (per-parameter tensors sliced, scalars kept)."""
    sd = opt.state_dict()
    shapes = [p.shape for g in opt.param_groups for p in g["params"]]
    state = {
        i: {n: v[k].clone() if torch.is_tensor(v) and v.shape == shapes[i] else v for n, v in s.items()}
        for i, s in sd["state"].items()
    }
    return {"state": state, "param_groups": sd["param_groups"]}


def _stack_optimizer(slices: list[dict[str, Any]], opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The stacked optimizer's state_dict from per-model slices (`_slice_optimizer`)."""
    shapes = [p.shape for g in opt.param_groups for p in g["params"]]
    state = {}
    for i, s in slices[0]["state"].items():
        state[i] = {
            n: torch.stack([sl["state"][i][n] for sl in slices])
            if torch.is_tensor(v) and (len(shapes[i]) >= 1 and v.shape == shapes[i][1:]) and v.ndim >= 1
            else v
            for n, v in s.items()
        }
    return {"state": state, "param_groups": slices[0]["param_groups"]}


class EnsembleFit:
    """The training loop of one ensemble of endpoints (see the module docstring)."""

    def __init__(self, cfg: dict[str, Any], data: DataBundle, seeds: list[int], job_dir: Path, tracker: Tracker):
        self.cfg, self.data, self.job_dir, self.tracker = cfg, data, job_dir, tracker
        self.optim = resolve_cfg(cfg["optimizer"])
        self.max_epochs = int(cfg["trainer"]["max_epochs"])
        self.device = data.train[0].device
        self.train_hash = config_hash(cfg, training_only=True)
        self.stop_at = {k: v for k, v in (cfg["trainer"].get("stop_at") or {}).items() if v is not None}
        self.epochs = sorted(set(int(e) for e in cfg["landscape"]["checkpoint_epochs"]))
        self.progress = cfg["trainer"].get("enable_progress_bar", True)
        self.swa_start = swa_start_epoch(self.optim, max_epochs=self.max_epochs)
        bs = cfg["data"]["batch_size"]
        self.seeds: list[_Seed] = []
        for i, seed in enumerate(seeds):
            loader = TensorLoader(*data.train, batch_size=bs, shuffle=True, seed=seed, augment=data.augment)
            self.seeds.append(_Seed(seed, i, loader, endpoint_dir(job_dir, seed), tracker.lightning_logger(seed)))
        self.steps_per_epoch = len(self.seeds[0].loader)
        self.ens = Ensemble([self._init_model(s.seed) for s in self.seeds])
        self.optimizer, self.scheduler = self._optimizer()
        self.swalr: SWALR | None = None
        self.average: dict[str, Tensor] | None = None
        self.n_averaged = 0
        self.epoch, self.global_step = 0, 0
        self.t0 = time.perf_counter()
        self.every_s = float(cfg["trainer"].get("checkpoint_every_s", 0) or 0)
        self.pending: dict[int, tuple[Path, dict[str, Any]]] = {}
        self.written = time.monotonic()

    # --- setup ---------------------------------------------------------------------------------------------
    def _init_model(self, seed: int) -> nn.Module:
        pl.seed_everything(seed, workers=True, verbose=False)  # the init of `none` (endpoint.build_run)
        return new_model(self.cfg, self.data).to(self.device)

    def _optimizer(self) -> tuple[torch.optim.Optimizer, Any]:
        cls, kwargs = base_optimizer_kwargs(self.optim)
        opt = cls(list(self.ens.params.values()), **kwargs)
        sched = build_scheduler(opt, self.optim, max_epochs=self.max_epochs, steps_per_epoch=self.steps_per_epoch)
        return opt, sched

    def _in_swa(self, epoch: int) -> bool:
        return self.swa_start is not None and epoch >= self.swa_start

    def _begin_swa(self) -> None:
        if self.swalr is None:
            w = self.optim["swa"]
            self.swalr = SWALR(
                self.optimizer, swa_lr=float(w["lr"]), anneal_epochs=int(w["anneal_epochs"]) * self.steps_per_epoch,
                anneal_strategy=w["anneal_strategy"],
            )  # fmt: skip

    # --- checkpoints -----------------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        """Checkpoint dirs stamped with the training hash (another config's checkpoints are removed)."""
        for s in self.seeds:
            stamp(s.ck, self.train_hash)

    def _checkpoint(self, s: _Seed) -> dict[str, Any]:
        k = s.index
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.ens.state_dict(k),
            "optimizer": _slice_optimizer(self.optimizer, k),
            "scheduler": _plain_state(self.scheduler.state_dict()),
            "swalr": None if self.swalr is None else _plain_state(self.swalr.state_dict()),
            "average": None if self.average is None else {n: t[k].clone() for n, t in self.average.items()},
            "n_averaged": self.n_averaged,
            "reached_epoch": s.reached_epoch,
            "trajectory": list(s.trajectory),
        }

    def _save(self, s: _Seed) -> None:
        """`vmap_epoch<e>.pt` at checkpoint epochs; `vmap_last.pt` at most every `trainer.checkpoint_every_s`
        seconds, the last finished epoch's state kept in memory in between (written on an interrupt)."""
        state = self._checkpoint(s)  # copies: training moves the live tensors on
        if self.epoch in self.epochs:
            self._write(s.ck / f"vmap_epoch{self.epoch}.pt", state)
        self.pending[s.seed] = (s.ck, state)

    @staticmethod
    def _write(path: Path, state: dict[str, Any]) -> None:
        with atomic_open(path, "wb") as f:
            torch.save(state, f)

    def flush(self) -> None:
        """Write every endpoint's pending `vmap_last.pt`."""
        pending, self.pending = self.pending, {}
        for ck, state in pending.values():
            self._write(ck / CHECKPOINT, state)
        self.written = time.monotonic()

    def resume(self) -> bool:
        """Continue from every endpoint's `vmap_last.pt` if all load and share one epoch; else start afresh."""
        self._prepare_dirs()
        states = []
        for s in self.seeds:
            try:
                states.append(torch.load(s.ck / CHECKPOINT, map_location=self.device, weights_only=True))
            except FileNotFoundError:
                return False
            except Exception as e:
                log.warning("ignoring unreadable checkpoint %s (%s): starting afresh", s.ck / CHECKPOINT, e)
                return False
        if len({st["epoch"] for st in states}) != 1:
            log.warning("vmap checkpoints of seeds %s differ in epoch: starting afresh", [s.seed for s in self.seeds])
            return False
        self.ens = Ensemble.restack(self.ens.template, [st["model"] for st in states])
        self.optimizer, self.scheduler = self._optimizer()
        self.optimizer.load_state_dict(_stack_optimizer([st["optimizer"] for st in states], self.optimizer))
        self.scheduler.load_state_dict(states[0]["scheduler"])
        self.epoch, self.global_step = states[0]["epoch"], states[0]["global_step"]
        if states[0]["swalr"] is not None:
            self._begin_swa()
            self.swalr.load_state_dict(states[0]["swalr"])
        if states[0]["average"] is not None:
            self.average = {n: torch.stack([st["average"][n] for st in states]) for n in states[0]["average"]}
        self.n_averaged = states[0]["n_averaged"]
        for s, st in zip(self.seeds, states):
            s.reached_epoch, s.trajectory = st["reached_epoch"], list(st["trajectory"])
        log.info("seeds %s: resuming the vmap ensemble at epoch %d", [s.seed for s in self.seeds], self.epoch)
        return True

    # --- the loop ------------------------------------------------------------------------------------------
    def _train_epoch(self) -> tuple[list[float], list[float], list[bool]]:
        """One epoch of every model; per-model mean loss, accuracy and whether a loss was non-finite."""
        rho, adaptive, clip = self.optim["rho"], self.optim["adaptive"], self.optim["grad_clip"]
        in_swa = self._in_swa(self.epoch)
        if in_swa:
            self._begin_swa()
        for s in self.seeds:
            s.loader.set_epoch(self.epoch)
        k = len(self.seeds)
        loss_sum = torch.zeros(k, device=self.device)
        acc_sum = torch.zeros(k, device=self.device)
        bad = torch.zeros(k, dtype=torch.bool, device=self.device)
        count = 0
        for batches in zip(*(s.loader for s in self.seeds)):
            x = torch.stack([b[0] for b in batches])
            y = torch.stack([b[1] for b in batches])
            loss, acc = self.ens.step(x, y, self.optimizer, rho=rho, adaptive=adaptive, clip=clip)
            bad |= ~torch.isfinite(loss)
            n = y.shape[1]
            loss_sum += loss * n
            acc_sum += acc * n
            count += n
            (self.swalr if in_swa else self.scheduler).step()
            self.global_step += 1
        if in_swa:
            params = [p.detach() for p in self.ens.params.values()]
            if self.n_averaged == 0:
                self.average = {n: p.detach().clone() for n, p in self.ens.params.items()}
            else:
                swa_average_(list(self.average.values()), params, self.n_averaged)
            self.n_averaged += 1
        self.epoch += 1
        return (loss_sum / count).tolist(), (acc_sum / count).tolist(), bad.tolist()

    def _met(self, loss: float, acc: float) -> bool:
        by_loss = "train_loss" in self.stop_at and loss <= self.stop_at["train_loss"]
        by_acc = "train_acc" in self.stop_at and acc >= self.stop_at["train_acc"]
        return by_loss or by_acc

    def _epoch_end(self, s: _Seed, loss: float, acc: float, val: tuple[list[float], list[float]] | None) -> None:
        """After an epoch of a training endpoint: its metrics, trajectory point, stop criterion, checkpoints."""
        p = f"seed{s.seed}/"
        metrics = {f"{p}train/loss": loss, f"{p}train/acc": acc, f"{p}lr": self.optimizer.param_groups[0]["lr"]}
        if val is not None:
            metrics.update({f"{p}val/loss": val[0][s.index], f"{p}val/acc": val[1][s.index]})
        if self.epoch in self.epochs and all(pt["epoch"] != self.epoch for pt in s.trajectory):
            model = self.ens.module(s.index)
            point = measures.trajectory_point(
                model, self._ad.probe, self.cfg["landscape"]["sharpness"], self.cfg["seed"], epoch=self.epoch,
                weights="running",
            )  # fmt: skip
            s.trajectory.append(point)
            metrics.update({f"{p}sharpness/{key}": point[key] for key in ("hessian_top_eig", "hessian_trace")})
        if s.reached_epoch is None and self.stop_at and self._met(loss, acc):
            s.reached_epoch = self.epoch
        if s.logger:
            s.logger.log_metrics({**metrics, "epoch": self.epoch - 1}, step=self.global_step - 1)
        if self.progress and not sys.stderr.isatty():
            print(
                f"seed {s.seed} epoch {self.epoch}/{self.max_epochs} loss {loss:.3g} acc {acc:.3g} "
                f"{time.perf_counter() - self._epoch_t0:.1f} s (vmap)",
                file=sys.stderr,
                flush=True,
            )
        self._save(s)

    def _finalise(self, s: _Seed) -> tuple[nn.Module, Endpoint]:
        """The endpoint's final model (SWA average + BN recompute when SWA averaged), record, final.pt/json."""
        model = self.ens.module(s.index)
        if self.n_averaged > 0 and self.average is not None:
            avg = {n: t[s.index] for n, t in self.average.items()}
            with torch.no_grad():
                for name, param in model.named_parameters():
                    param.copy_(avg[name])
            s.loader.set_epoch(max(self.epoch - 1, 0))
            update_bn(s.loader, model, device=self.device)
        entry = Endpoint(
            seed=s.seed, checkpoint=str((s.ck / "final.pt").relative_to(self.job_dir)), epochs=self.epoch,
            train_time_s=time.perf_counter() - self.t0,
            stop={"criterion": dict(self.stop_at), "reached": s.reached_epoch is not None, "epoch": s.reached_epoch}
            if self.stop_at else None,
            trajectory=list(s.trajectory), **endpoint_metrics(model, self.data, self.cfg["data"]["eval_batch_size"]),
        )  # fmt: skip
        with atomic_open(s.ck / "final.pt", "wb") as f:
            torch.save(model.state_dict(), f)
        write_json(s.ck / "final.json", {"train_hash": self.train_hash, "entry": entry})
        final = ("train_loss", "train_acc", "test_loss", "test_acc")
        self.tracker.log({f"seed{s.seed}/final/{k}": getattr(entry, k) for k in final})
        if s.logger:
            s.logger.save()
            s.logger.finalize("success")
        s.state = "finished"
        return model, entry

    def fit(self, ad: measures.AnalysisData) -> dict[int, tuple[nn.Module, Endpoint]]:
        """Train until every endpoint finished or diverged; the finished ones by seed (Diverged raised after)."""
        self._ad = ad
        if not self.resume():
            log.info("seeds %s: training as one vmap ensemble", [s.seed for s in self.seeds])
        done: dict[int, tuple[nn.Module, Endpoint]] = {}
        for s in self.seeds:  # resumed from a checkpoint of a finished run: finalise now
            if s.reached_epoch is not None or self.epoch >= self.max_epochs:
                done[s.seed] = self._finalise(s)
        try:
            self._loop(done)
        except BaseException:  # an interrupt or a failure: the last finished epoch is not lost
            self.flush()
            raise
        for s in self.seeds:
            if s.state == "diverged":
                raise Diverged(f"seed {s.seed}: non-finite training loss at epoch {s.diverged_epoch}")
        return done

    def _loop(self, done: dict[int, tuple[nn.Module, Endpoint]]) -> None:
        val = TensorLoader(*self.data.val, batch_size=self.cfg["data"]["eval_batch_size"]) if self.data.val else None
        while any(s.state == "training" for s in self.seeds) and self.epoch < self.max_epochs:
            self._epoch_t0 = time.perf_counter()
            losses, accs, bad = self._train_epoch()
            scores = None
            if val is not None:
                scores = tuple(t.tolist() for t in self.ens.evaluate(val))
            for s in self.seeds:
                if s.state != "training":
                    continue
                if bad[s.index] or not (math.isfinite(losses[s.index])):
                    s.state, s.diverged_epoch = "diverged", self.epoch
                    continue
                self._epoch_end(s, losses[s.index], accs[s.index], scores)
                if s.reached_epoch is not None or self.epoch >= self.max_epochs:
                    self.pending.pop(s.seed, None)
                    done[s.seed] = self._finalise(s)
            if time.monotonic() - self.written >= self.every_s:
                self.flush()


def _deterministic(cfg: dict[str, Any]) -> None:
    """What `Trainer(deterministic=True)` sets: deterministic kernels (and cuBLAS's workspace on CUDA)."""
    if cfg["trainer"].get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def train_ensemble(
    cfg: dict[str, Any], data: DataBundle, job_dir: Path, tracker: Tracker, ad: measures.AnalysisData
) -> list[tuple[nn.Module, Endpoint]]:
    """Every endpoint of the cell (model, record) in seed order: finished ones reused, the others trained as one
    vmap ensemble."""
    seeds = list(cfg["endpoints"]["seeds"])
    train_hash = config_hash(cfg, training_only=True)
    out = {s: reuse_finished(cfg, data, endpoint_dir(job_dir, s), train_hash) for s in seeds}
    todo = [s for s in seeds if out[s] is None]
    if todo:
        _deterministic(cfg)
        trained = EnsembleFit(cfg, data, todo, job_dir, tracker).fit(ad)
        out.update(trained)
    return [out[s] for s in seeds]

"""Instability analysis (`endpoints.mode=spawn`; Frankle et al. 2020, "Linear Mode Connectivity and the Lottery
Ticket Hypothesis").

One parent is trained from `endpoints.parent_seed` (initialisation and data order) up to the largest spawn epoch;
its full training state at the end of each spawn epoch k (weights, optimizer state incl. momentum and SAM/SWA
state, LR-schedule position, epoch counter) is kept as `checkpoints/parent/epoch<k>.ckpt`. At each k one child per
`endpoints.seeds` entry continues from that state to `trainer.max_epochs` with its own data order and augmentation
(`endpoints.data_seeds`, null: the seeds); k = 0 is the parent's initialisation (same init, different data order).
The children of k live in `checkpoints/spawn<k>/seed<s>/` and resume and are reused like independent endpoints; a
finished parent (every `epoch<k>.ckpt` of its training config present and loadable) is never retrained. Checkpoints
are data: every one is loaded with weights_only, and a parent checkpoint that does not load so (truncated, corrupt,
or carrying code) is reported by name and the parent is trained again, as an unreadable `last.ckpt` or `final.pt`.

Analysis: the linear path (BatchNorm statistics recomputed along it) between every pair of children of every k
gives `instability` (one record per k: the pairs' barriers and their summaries over pairs, and whether the cell
is stable there); the children of the largest k are the cell's `endpoints` and get the full analysis (every
`landscape.connectivity.methods`, sharpness), so the rest of the report reads a spawn cell like any other.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape_sweep.data import DataBundle
from landscape_sweep.pipeline import measures
from landscape_sweep.pipeline.config import config_hash, data_seeds
from landscape_sweep.pipeline.endpoint import (
    Run,
    build_run,
    endpoint_dir,
    fit,
    make_trainer,
    one_line,
    resume_point,
    reuse_finished,
    stamp,
    train_endpoint,
)
from landscape_sweep.pipeline.tracking import Tracker
from landscape_sweep.results import (
    INSTABILITY_MEASURES,
    STABLE_MEASURE,
    STABLE_THRESHOLD,
    Endpoint,
    PathEntry,
    summarize,
    summarize_pairs,
)

log = logging.getLogger(__name__)

PAIR_FIELDS = ("pair", *INSTABILITY_MEASURES, "endpoint_distance")


def spawn_epochs(cfg: dict[str, Any]) -> list[int]:
    return sorted(cfg["endpoints"]["spawn_epochs"])


def parent_run(cfg: dict[str, Any], job_dir: Path) -> Run:
    """The parent's run: init and data seed `endpoints.parent_seed`, in `checkpoints/parent`."""
    seed = cfg["endpoints"].get("parent_seed", 0)
    return Run(seed, seed, seed, job_dir / "checkpoints" / "parent", label="parent")


def child_runs(cfg: dict[str, Any], job_dir: Path, k: int) -> list[Run]:
    """The children of spawn epoch k: the parent's init, data seed `data_seeds[i]`, started from `epoch<k>.ckpt`."""
    parent = parent_run(cfg, job_dir)
    start = parent.ck / f"epoch{k}.ckpt" if k > 0 else None
    return [
        Run(s, parent.init_seed, d, endpoint_dir(job_dir, s, d, spawn=k), start=start, spawn_epoch=k)
        for s, d in zip(cfg["endpoints"]["seeds"], data_seeds(cfg["endpoints"]))
    ]


def train_parent(cfg: dict[str, Any], data: DataBundle, job_dir: Path, tracker: Tracker, ad: Any) -> None:
    """Train the parent to the largest spawn epoch, keeping `epoch<k>.ckpt` at each k > 0 (nothing for k = 0 only);
    a parent whose checkpoints are all there is reused, an interrupted one resumes from its `last.ckpt`."""
    last = max(spawn_epochs(cfg))
    if last == 0:
        return
    run, train_hash = parent_run(cfg, job_dir), config_hash(cfg, training_only=True)
    stamp(run.ck, train_hash)
    if _reusable_parent(run.ck, [run.ck / f"epoch{k}.ckpt" for k in spawn_epochs(cfg) if k > 0]):
        log.info("reusing the parent's checkpoints in %s", run.ck)
        return
    resume = resume_point(run.ck, train_hash, last)
    module, train, val, callbacks = build_run(cfg, data, run, ad, stop=False, keep=spawn_epochs(cfg))
    short = {**cfg, "trainer": {**cfg["trainer"], "max_epochs": last}}  # the schedule still spans max_epochs
    trainer = make_trainer(short, callbacks, tracker.lightning_logger(run.name), job_dir, val is not None)
    log.info("parent: %s to epoch %d in %s", "resuming" if resume else "training", last, run.ck)
    fit(trainer, module, train, val, resume, run)  # as an endpoint's: SIGTERM exits (a rerun resumes), NaN diverges
    missing = [k for k in spawn_epochs(cfg) if k > 0 and not (run.ck / f"epoch{k}.ckpt").is_file()]
    if missing:
        raise RuntimeError(f"parent: no checkpoint of spawn epochs {missing} after training")


def _reusable_parent(ck: Path, checkpoints: list[Path]) -> bool:
    """Whether the parent's spawn checkpoints are all there and load as data (weights_only). The first that does not
    is reported and the parent's checkpoints are removed: it trains again from its initialisation (same seed, same
    checkpoints), instead of every child failing on it at every rerun."""
    if not all(p.is_file() for p in checkpoints):
        return False
    for path in checkpoints:
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, corrupt, or not plain data
            log.warning("ignoring unreadable parent checkpoint %s (%s): training the parent again", path, one_line(e))
            for p in (*checkpoints, ck / "last.ckpt"):
                p.unlink(missing_ok=True)
            return False
    return True


def train_spawned(
    cfg: dict[str, Any], data: DataBundle, job_dir: Path, tracker: Tracker, ad: Any
) -> dict[int, list[tuple[nn.Module, Endpoint]]]:
    """The parent, then the children of every spawn epoch (model, record) in seed order, by spawn epoch."""
    train_parent(cfg, data, job_dir, tracker, ad)
    return {
        k: [train_endpoint(cfg, data, run, job_dir, tracker, ad) for run in child_runs(cfg, job_dir, k)]
        for k in spawn_epochs(cfg)
    }


def load_spawned(cfg: dict[str, Any], data: DataBundle, job_dir: Path) -> dict[int, list[tuple[nn.Module, Endpoint]]]:
    """The finished children of every spawn epoch (re-analysis); FileNotFoundError naming the first one missing."""
    train_hash, out = config_hash(cfg, training_only=True), {}
    for k in spawn_epochs(cfg):
        out[k] = []
        for run in child_runs(cfg, job_dir, k):
            found = reuse_finished(cfg, data, run.ck, train_hash)
            if found is None:
                raise FileNotFoundError(f"{run.ck / 'final.pt'}: no finished child of this training config")
            out[k].append(found)
    return out


def linear_only(landscape: dict[str, Any]) -> dict[str, Any]:
    """The analysis settings of the instability paths: the linear path only, no sharpness along it, no surfaces."""
    conn = {**landscape["connectivity"], "methods": ["linear"], "sharpness_points": []}
    return {**landscape, "connectivity": conn, "surface": {**landscape["surface"], "enabled": False}}


def _summary(values: list[Any], pairs: list[Any] | None = None) -> dict[str, Any]:
    """mean, std, stderr (the error of the mean: over child pairs, which share children, the jackknife over
    children, `results.pair_jackknife_se`; over children std/√n) and n."""
    s = summarize_pairs(zip(pairs, values)) if pairs is not None else summarize(values)
    return {"mean": s.mean, "std": s.std, "stderr": s.se, "n": s.n}


def instability_record(k: int, endpoints: list[Endpoint], paths: list[PathEntry]) -> dict[str, Any]:
    """One spawn epoch's record: children, pairs (barriers of the linear path), summaries over pairs, `stable`."""
    pairs = [{f: getattr(p, f) for f in PAIR_FIELDS} for p in paths if p.method == "linear"]
    rec: dict[str, Any] = {
        "spawn_epoch": k,
        "children": [e.seed for e in endpoints],
        "data_seeds": [e.data_seed for e in endpoints],
        "pairs": pairs,
        **{m: _summary([p[m] for p in pairs], [p["pair"] for p in pairs]) for m in INSTABILITY_MEASURES},
        "test_acc": _summary([e.test_acc for e in endpoints]),
    }
    stat = rec[STABLE_MEASURE]
    rec["stable"] = bool(stat["n"] > 0 and stat["mean"] < STABLE_THRESHOLD)
    return rec


def instability(
    trained: dict[int, list[tuple[nn.Module, Endpoint]]],
    ad: measures.AnalysisData,
    landscape: dict[str, Any],
    seed: int,
    known: dict[int, list[PathEntry]] | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """The `instability` records (one per spawn epoch, in order) and the stable epoch (earliest stable k, None if
    none). `known`: linear paths already measured, by k (the full analysis of the last k's children)."""
    records = []
    for k, pairs in trained.items():
        t0 = time.perf_counter()
        paths = (known or {}).get(k) or []
        if not any(p.method == "linear" for p in paths):
            models = [m for m, _ in pairs]
            paths = []
            for i, j in itertools.combinations(range(len(models)), 2):
                paths += measures.pair_paths(models[i], models[j], (i, j), ad, linear_only(landscape), seed)
        records.append(instability_record(k, [e for _, e in pairs], paths))
        log.info("spawn epoch %d: instability in %.1fs", k, time.perf_counter() - t0)
    stable = next((r["spawn_epoch"] for r in records if r["stable"]), None)
    return records, stable


def finish(result: Any, trained: dict[int, list[tuple[nn.Module, Endpoint]]], ad: Any, cfg: dict[str, Any]) -> Any:
    """`result` (analysed: its endpoints are the last k's children) with `instability` and `stable_epoch`."""
    t0 = time.perf_counter()
    last = max(trained)
    records, stable = instability(trained, ad, cfg["landscape"], cfg["seed"], {last: result.connectivity})
    times = {**result.timing_s, "analysis": result.timing_s.get("analysis", 0.0) + time.perf_counter() - t0}
    return dataclasses.replace(result, instability=records, stable_epoch=stable, timing_s=times)

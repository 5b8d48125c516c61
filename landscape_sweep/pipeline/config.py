"""Config checks and identity of a cell.

`validate(cfg)` runs before any work and raises `ConfigError` with one line naming the key, the value and what
is allowed. `config_hash(cfg)` is the cell's identity: the resolved config minus run-only keys (paths, logger,
progress bars), so re-running a sweep can skip finished cells and resume interrupted ones; `config_changes` names
the keys in which two cells differ. One cell runs on one device: parallelism is across cells (launchers).
`${run_stamp:}` (registered here) names default run/sweep dirs uniquely: local time to the millisecond + pid.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import typing
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from omegaconf import DictConfig, OmegaConf

from landscape_sweep import CONF_DIR  # noqa: F401 (re-exported: the CLI and tests import it from here)
from landscape_sweep.checks import (
    SEED_LIMIT,
    check_choice,
    check_distinct,
    check_fraction,
    check_int,
    check_lr,
    check_mapping,
    check_number,
    check_positive,
    check_seed,
    check_subset,
    fail,
    is_int,
)
from landscape_sweep.results import PATH_METHODS, RUN_ONLY, SHARPNESS_KINDS

TOP_KEYS = {
    "data",
    "model",
    "optimizer",
    "trainer",
    "landscape",
    "logger",
    "paths",
    "report",
    "task_name",
    "seed",
    "endpoints",
    "tags",
}
MODEL_KEYS = {"arch", "depth", "width", "norm", "activation"}
DATA_KEYS = {
    "name",
    "root",
    "train_size",
    "label_noise",
    "val_size",
    "batch_size",
    "eval_batch_size",
    "augment",
    "download",
    "seed",
    "options",
    "ood",
}
LOGGERS = ("wandb", "csv", "none")
PARALLEL_MODES = ("none", "processes", "vmap")
# Trainer settings the vmap ensemble loop does not implement beyond WHOLE_EPOCHS (refused for every mode), with the
# value it behaves as
VMAP_TRAINER_DEFAULTS = {"min_epochs": 0, "check_val_every_n_epoch": 1}

# Trainer settings that cut or split epochs: a cell trains whole epochs, each handed to Lightning as one batch
# (training.module.EpochAsBatch), so only their defaults are allowed
WHOLE_EPOCHS = {"max_steps": -1, "limit_train_batches": 1.0, "val_check_interval": 1.0, "accumulate_grad_batches": 1,
                "overfit_batches": 0.0}  # fmt: skip
WHOLE_EPOCHS_WHY = ": a cell trains whole epochs (trainer.max_epochs, or trainer.stop_at to stop early)"
# trainer.threads: at most this many torch threads (libgomp aborts the process when it cannot create them, e.g.
# 100000; no node has this many cores). The pre-check also bounds it by this machine's cores for local launchers.
MAX_THREADS = 1024

# keys that only change the post-hoc analysis: a trained endpoint stays valid when only these change
ANALYSIS_ONLY = ("landscape", "data.ood")
ABSENT = "<absent>"  # a key one of two configs does not have (config_changes)


# one cell = one device; several devices are used by running several cells at once (joblib, SLURM arrays)
ONE_DEVICE = (
    "one cell runs on one device (choose it with CUDA_VISIBLE_DEVICES); run cells in parallel instead with "
    "hydra/launcher=joblib, slurm or slurm_gpu"
)


class ConfigError(ValueError):
    """A bad config value; its message is one line: `key=value: what is allowed`."""


@contextmanager
def config_errors() -> Iterator[None]:
    """Turn the plain one-line ValueErrors of the shared checks into ConfigError."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


def run_stamp() -> str:
    """A unique, time-sortable directory name: `YYYY-mm-dd_HH-MM-SS.mmm_<pid>` (local time)."""
    now = datetime.now()
    return f"{now:%Y-%m-%d_%H-%M-%S}.{now.microsecond // 1000:03d}_{os.getpid()}"


# cached per config like Hydra's `now`, so every job of a sweep (and Hydra's own copies of it) sees one value
OmegaConf.register_new_resolver("run_stamp", run_stamp, use_cache=True, replace=True)


def _check_keys(node: Mapping, allowed: Iterable[str], prefix: str) -> None:
    unknown = sorted(set(node) - set(allowed))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{key}: unknown key; allowed: {', '.join(sorted(allowed))}")


def _validate_data(data: Mapping) -> None:
    # deferred: the data package imports torch; `import pipeline.config` stays free of it (launchers, status)
    from landscape_sweep.data import DATASETS
    from landscape_sweep.data.datasets import check_options
    from landscape_sweep.data.ood import check_ood

    _check_keys(data, DATA_KEYS, "data")
    if data.get("name") not in DATASETS:
        fail("data.name", data.get("name"), f"unknown dataset; allowed: {', '.join(DATASETS)}")
    if data.get("train_size") is not None:
        check_int("data.train_size", data["train_size"])
    check_fraction("data.label_noise", data.get("label_noise", 0.0))
    check_int("data.batch_size", data.get("batch_size"))
    check_int("data.eval_batch_size", data.get("eval_batch_size"))
    val = data.get("val_size", 0)
    if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0 or (isinstance(val, float) and val >= 1):
        fail("data.val_size", val, "must be a count >= 0 or a fraction in [0, 1)")
    if "seed" in data:
        check_seed("data.seed", data["seed"])
    check_options(data["name"], data.get("options") or {})
    check_ood(data["name"], data.get("ood"), data.get("options") or {})


def _validate_trainer(trainer: Mapping) -> None:
    import pytorch_lightning as pl  # deferred: `import pipeline.config` stays free of Lightning (launchers, status)

    owned = {"self", "callbacks", "logger", "default_root_dir", "enable_checkpointing", "limit_val_batches"}
    allowed = set(inspect.signature(pl.Trainer.__init__).parameters) - owned  # the cell sets these itself
    _check_keys(trainer, allowed | {"stop_at", "checkpoint_every_s", "threads"}, "trainer")
    check_number("trainer.checkpoint_every_s", trainer.get("checkpoint_every_s", 0), 0)
    threads = trainer.get("threads", "auto")
    if threads != "auto" and not (is_int(threads) and threads >= 1):
        fail("trainer.threads", threads, "must be auto (this process's share of the cores) or an integer >= 1")
    if threads != "auto" and threads > MAX_THREADS:
        fail("trainer.threads", threads, f"must be at most {MAX_THREADS}, or auto: more threads than any node has "
             "cores, and OpenMP aborts the process when it cannot start them")  # fmt: skip
    check_int("trainer.max_epochs", trainer.get("max_epochs"))
    stop = trainer.get("stop_at") or {}
    _check_keys(stop, STOP_AT_KEYS, "trainer.stop_at")
    if stop.get("train_loss") is not None:
        check_positive("trainer.stop_at.train_loss", stop["train_loss"])
    if stop.get("train_acc") is not None:
        check_number("trainer.stop_at.train_acc", stop["train_acc"], 0, 1, open_low=True)
    if trainer.get("gradient_clip_val") is not None:
        fail(
            "trainer.gradient_clip_val",
            trainer["gradient_clip_val"],
            "not supported with manual optimization; set optimizer.grad_clip instead",
        )
    _require_defaults(trainer, WHOLE_EPOCHS, WHOLE_EPOCHS_WHY)
    _validate_devices(trainer)
    _validate_precision(trainer.get("precision", "32-true"))


def _validate_devices(trainer: Mapping) -> None:
    """One cell = one device: devices 1, num_nodes 1, a single-device strategy, a known accelerator."""
    accelerator = trainer.get("accelerator", "auto")
    if accelerator not in accelerators():
        fail("trainer.accelerator", accelerator, f"must be one of {', '.join(accelerators())}")
    devices = trainer.get("devices", "auto")
    if not (is_int(devices) and devices == 1) and devices != "1":
        fail("trainer.devices", devices, f"must be 1: {ONE_DEVICE}")
    nodes = trainer.get("num_nodes", 1)
    if not (is_int(nodes) and nodes == 1):
        fail("trainer.num_nodes", nodes, f"must be 1: {ONE_DEVICE}")
    strategy = trainer.get("strategy", "auto")
    if strategy not in ("auto", "single_device"):
        fail("trainer.strategy", strategy, f"must be auto or single_device: {ONE_DEVICE}")


def accelerators() -> tuple[str, ...]:
    """The accelerator names Lightning accepts here: auto, gpu and its registered ones (cpu, cuda, mps, ...)."""
    from pytorch_lightning.accelerators import AcceleratorRegistry  # deferred: Lightning, as in _validate_trainer

    return ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))


def precisions() -> tuple[Any, ...]:
    """Every `Trainer(precision=...)` value Lightning accepts (read from its own type)."""
    from lightning_fabric.connector import _PRECISION_INPUT  # deferred: Lightning, as in _validate_trainer

    def flat(t: Any) -> list[Any]:
        return [a for x in typing.get_args(t) for a in (flat(x) if typing.get_args(x) else [x])]

    return tuple(flat(_PRECISION_INPUT))


def _validate_precision(precision: Any) -> None:
    allowed = precisions()
    if isinstance(precision, bool) or precision not in allowed:
        fail("trainer.precision", precision, f"must be one of {', '.join(dict.fromkeys(map(str, allowed)))}")
    if str(precision).startswith("transformer-engine") and importlib.util.find_spec("transformer_engine") is None:
        fail("trainer.precision", precision, "needs the transformer_engine package; use bf16-mixed or 32-true")


def check_devices_available(trainer: Mapping) -> None:
    """ConfigError when `trainer.accelerator` names a device this machine does not have (gpu/cuda/mps/tpu)."""
    from pytorch_lightning.accelerators import AcceleratorRegistry  # deferred: Lightning, as in _validate_trainer

    accelerator = trainer.get("accelerator", "auto")
    if accelerator in ("auto", "cpu"):
        return
    names = ("cuda", "mps") if accelerator == "gpu" else (accelerator,)
    if not any(n in AcceleratorRegistry and AcceleratorRegistry[n]["accelerator"].is_available() for n in names):
        raise ConfigError(
            f"trainer.accelerator={accelerator!r}: no such device on this machine; use trainer.accelerator=cpu "
            "or auto (trainer=cpu), or run the cells where one is (hydra/launcher=slurm_gpu)"
        )


LANDSCAPE_KEYS = {"name", "checkpoint_epochs", "analysis_size", "sharpness", "connectivity", "surface"}
SHARPNESS_SETTINGS = {
    "top_k",
    "tol",
    "max_iter",
    "trace_probes",
    "spectrum",
    "per_block",
    "kinds",
    "rho",
    "adaptive_rho",
    "steps",
    "num_samples",
    "average_sigma",
    "adaptive_average_sigma",
}
CONNECTIVITY_KEYS = {"methods", "num_points", "sharpness_points", "curve"}
CURVE_KEYS = {"num_bends", "max_epochs", "tol", "window", "patience", "min_epochs", "floor", "lr", "batch_size"}
SURFACE_KEYS = {"enabled", "num_points", "span"}
# a method listed twice would measure the same paths twice and count them as independent pairs (n doubled, std 0)
DUPLICATE_PATHS = ": each method's paths are measured once (a repeat would count the same pairs twice)"


def _validate_landscape(land: Mapping, *, max_epochs: int) -> None:
    _check_keys(land, LANDSCAPE_KEYS, "landscape")
    epochs = land.get("checkpoint_epochs") or []
    if not isinstance(epochs, (list, tuple)) or not all(is_int(e) and 1 <= e <= max_epochs for e in epochs):
        allowed = f"must be a list of epochs in 1..{max_epochs} (trainer.max_epochs)"
        fail("landscape.checkpoint_epochs", epochs, allowed)
    check_distinct("landscape.checkpoint_epochs", epochs, ": each epoch is measured once")
    if land.get("analysis_size") is not None:
        check_int("landscape.analysis_size", land["analysis_size"])
    sharp, conn, surf = land.get("sharpness", {}), land.get("connectivity", {}), land.get("surface", {})
    _check_keys(sharp, SHARPNESS_SETTINGS, "landscape.sharpness")
    for key in ("top_k", "max_iter", "steps"):
        check_int(f"landscape.sharpness.{key}", sharp.get(key))
    for key in ("trace_probes", "num_samples"):
        check_int(f"landscape.sharpness.{key}", sharp.get(key), low=2)
    for key in ("tol", "rho", "adaptive_rho", "average_sigma", "adaptive_average_sigma"):
        check_positive(f"landscape.sharpness.{key}", sharp.get(key))
    check_subset("landscape.sharpness.kinds", sharp.get("kinds"), SHARPNESS_KINDS)
    check_distinct("landscape.sharpness.kinds", sharp["kinds"], ": each kind is measured once")
    if not isinstance(sharp.get("per_block", False), bool):
        fail("landscape.sharpness.per_block", sharp["per_block"], "must be true or false")
    _check_keys(conn, CONNECTIVITY_KEYS, "landscape.connectivity")
    check_subset("landscape.connectivity.methods", conn.get("methods"), PATH_METHODS)
    check_distinct("landscape.connectivity.methods", conn["methods"], DUPLICATE_PATHS)
    check_int("landscape.connectivity.num_points", conn.get("num_points"), low=2)
    pts = conn.get("sharpness_points")
    if not isinstance(pts, (list, tuple)) or not all(isinstance(t, (int, float)) and 0 <= t <= 1 for t in pts):
        fail("landscape.connectivity.sharpness_points", pts, "must be a list of t values in [0, 1]")
    check_distinct("landscape.connectivity.sharpness_points", pts, ": each t is measured once")
    curve = conn.get("curve", {})
    _check_keys(curve, CURVE_KEYS, "landscape.connectivity.curve")
    for key in ("num_bends", "max_epochs", "window", "batch_size"):
        check_int(f"landscape.connectivity.curve.{key}", curve.get(key))
    patience = curve.get("patience")
    if not (isinstance(patience, (int, float)) and not isinstance(patience, bool) and 0 < patience <= 1):
        fail("landscape.connectivity.curve.patience", patience, "must be a fraction of the epochs run, in (0, 1]")
    check_int("landscape.connectivity.curve.min_epochs", curve.get("min_epochs"), low=0)
    check_number("landscape.connectivity.curve.floor", curve.get("floor"), 0)
    check_lr("landscape.connectivity.curve.lr", curve.get("lr"))
    check_positive("landscape.connectivity.curve.tol", curve.get("tol"))
    _check_keys(surf, SURFACE_KEYS, "landscape.surface")
    check_int("landscape.surface.num_points", surf.get("num_points"), low=2)
    check_positive("landscape.surface.span", surf.get("span"))


ENDPOINT_KEYS = {"seeds", "data_seeds", "mode", "spawn_epochs", "parent_seed", "parallel"}
REPORT_KEYS = {"wandb", "facet", "select", "unreached"}
STOP_AT_KEYS = {"train_loss", "train_acc"}
ENDPOINT_MODES = ("independent", "spawn")
# `endpoints` keys added after schema 2 with the value that means "as before": left out of a cell's identity at that
# value (and the spawn-only ones in independent mode), so completed cells of older configs keep their hash
ENDPOINT_DEFAULTS = {"mode": "independent", "data_seeds": None, "spawn_epochs": [], "parent_seed": 0}
SPAWN_ONLY = ("spawn_epochs", "parent_seed")


SEED_WHY = " (the seed range of numpy and Lightning's seed_everything)"


def is_seed(value: Any) -> bool:
    """An integer in [0, 2^32)."""
    return is_int(value) and 0 <= value < SEED_LIMIT


def data_seeds(endpoints: Mapping[str, Any]) -> list[int]:
    """The data-order/augmentation seed of each endpoint (`endpoints.data_seeds`; null: `endpoints.seeds`)."""
    return list(endpoints.get("data_seeds") or endpoints["seeds"])


def _validate_endpoints(endpoints: Mapping, *, max_epochs: int) -> None:
    _check_keys(endpoints, ENDPOINT_KEYS, "endpoints")
    seeds = endpoints.get("seeds")
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(is_seed(s) for s in seeds):
        fail("endpoints.seeds", seeds, f"must be a non-empty list of integers in [0, 2^32), e.g. [0, 1]{SEED_WHY}")
    ds = endpoints.get("data_seeds")
    if ds is not None and (not isinstance(ds, (list, tuple)) or len(ds) != len(seeds) or not all(map(is_seed, ds))):
        fail("endpoints.data_seeds", ds, f"must be null (= endpoints.seeds) or {len(seeds)} integers in [0, 2^32), "
             f"one per seed{SEED_WHY}")  # fmt: skip
    check_seed("endpoints.parent_seed", endpoints.get("parent_seed", 0))
    mode = check_choice("endpoints.mode", endpoints.get("mode", "independent"), ENDPOINT_MODES)
    check_choice("endpoints.parallel", endpoints.get("parallel", "none"), PARALLEL_MODES)
    spawn = endpoints.get("spawn_epochs") or []
    if mode == "independent":
        if len(set(zip(seeds, data_seeds(endpoints)))) != len(seeds):
            fail(
                "endpoints.seeds",
                list(seeds),
                "must not contain duplicates (unless endpoints.data_seeds tell them apart)",
            )
        if spawn:
            fail("endpoints.spawn_epochs", list(spawn), "only with endpoints.mode=spawn")
        return
    if len(seeds) < 2:
        fail("endpoints.seeds", list(seeds), "spawn mode needs >= 2 children (one per seed) to measure a barrier")
    if len(set(data_seeds(endpoints))) != len(seeds):
        fail("endpoints.data_seeds", data_seeds(endpoints), "spawn mode needs a different data seed per child")
    if not isinstance(spawn, (list, tuple)) or not spawn or not all(is_int(k) and 0 <= k < max_epochs for k in spawn):
        fail("endpoints.spawn_epochs", spawn, f"must be a non-empty list of epochs in 0..{max_epochs - 1} "
             "(< trainer.max_epochs; 0 = the parent's initialisation)")  # fmt: skip
    if len(set(spawn)) != len(spawn):
        fail("endpoints.spawn_epochs", list(spawn), "must not contain duplicates")
    parallel = endpoints.get("parallel", "none")
    if parallel != "none":
        fail("endpoints.parallel", parallel, "must be none with endpoints.mode=spawn (children train one by one)")


def _validate_parallel(c: Mapping[str, Any]) -> None:
    """`endpoints.parallel=vmap` trains the ensemble itself (no Lightning Trainer): refuse the Trainer settings
    it does not implement (docs/architecture.md)."""
    if (c.get("endpoints") or {}).get("parallel", "none") != "vmap":
        return
    if (c.get("endpoints") or {}).get("data_seeds") is not None:
        fail("endpoints.data_seeds", c["endpoints"]["data_seeds"], "must be null with endpoints.parallel=vmap")
    trainer = c["trainer"]
    precision = str(trainer.get("precision", "32-true"))
    if precision not in ("32", "32-true"):
        fail("trainer.precision", trainer.get("precision"), "must be 32-true with endpoints.parallel=vmap")
    _require_defaults(trainer, VMAP_TRAINER_DEFAULTS, " (unset) with endpoints.parallel=vmap")


def _require_defaults(trainer: Mapping, defaults: Mapping[str, Any], why: str) -> None:
    """Refuse a Trainer setting other than its default (or unset): `trainer.<key>=<value>: must be <default><why>`."""
    for key, default in defaults.items():
        if trainer.get(key, default) not in (default, None):
            fail(f"trainer.{key}", trainer[key], f"must be {default}{why}")


def resolved(cfg: DictConfig | Mapping) -> dict[str, Any]:
    """The config as a plain resolved dict, without Hydra's own `hydra` node."""
    if not isinstance(cfg, DictConfig):
        return {k: v for k, v in dict(cfg).items() if k != "hydra"}
    return {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in cfg.items_ex(resolve=True)
        if k != "hydra"
    }


def validate(cfg: DictConfig | Mapping) -> dict[str, Any]:
    """Check a composed config; returns it resolved as a plain dict. Raises ConfigError (one line)."""
    c = resolved(cfg)
    with config_errors():  # the shared checks and the model/optimizer validators raise plain ValueErrors
        _validate(c)
    return c


def _validate(c: dict[str, Any]) -> None:
    # deferred: models/ and training/ import torch; `import pipeline.config` stays free of it (launchers, status)
    from landscape_sweep.models import validate_model_args
    from landscape_sweep.pipeline.path_builders import check_methods
    from landscape_sweep.training.optim import validate_optimizer_cfg

    _check_keys(c, TOP_KEYS, "")
    _check_mappings(c)
    check_seed("seed", c.get("seed"))
    check_int("trainer.max_epochs", c["trainer"].get("max_epochs"))
    _validate_endpoints(c.get("endpoints") or {}, max_epochs=c["trainer"]["max_epochs"])
    _check_keys(c["model"], MODEL_KEYS, "model")
    m = c["model"]
    validate_model_args(m.get("arch"), m.get("depth"), m.get("width"), m.get("norm"), m.get("activation"))
    _validate_data(c["data"])
    _validate_batchnorm_batches(c)
    _validate_trainer(c["trainer"])
    _validate_parallel(c)
    precision = c["trainer"].get("precision")
    validate_optimizer_cfg(c["optimizer"], max_epochs=c["trainer"]["max_epochs"], precision=precision)
    _validate_landscape(c["landscape"], max_epochs=c["trainer"]["max_epochs"])
    check_methods(c["landscape"]["connectivity"]["methods"], m["arch"])  # each has a builder the model allows
    if c["logger"].get("name") not in LOGGERS:
        fail("logger.name", c["logger"].get("name"), f"allowed: {', '.join(LOGGERS)}")
    if c["logger"]["name"] == "wandb":
        check_mapping("logger.wandb", c["logger"].get("wandb"), ("project", "entity", "mode", "group", "tags"))
    if not isinstance(c.get("tags", []), (list, tuple)):
        fail("tags", c["tags"], "must be a list of W&B tags, e.g. [baseline]")
    _validate_report(c.get("report") or {})


# nodes that must be mappings: dotted key -> (its keys, for the message; whether null means "none/off"). A scalar
# there would otherwise crash the checks (`TypeError: 'int' object is not iterable`) instead of failing in one line.
MAPPING_NODES: dict[str, tuple[tuple[str, ...], bool]] = {
    "data": (tuple(DATA_KEYS), False),
    "model": (tuple(MODEL_KEYS), False),
    "optimizer": ((), False),
    "trainer": ((), False),
    "landscape": (tuple(LANDSCAPE_KEYS), False),
    "logger": (("name", "wandb"), False),
    "endpoints": (tuple(ENDPOINT_KEYS), False),
    "report": (tuple(REPORT_KEYS), True),
    "trainer.stop_at": (tuple(STOP_AT_KEYS), True),
    "landscape.sharpness": (tuple(SHARPNESS_SETTINGS), False),
    "landscape.connectivity": (tuple(CONNECTIVITY_KEYS), False),
    "landscape.connectivity.curve": (tuple(CURVE_KEYS), False),
    "landscape.surface": (tuple(SURFACE_KEYS), False),
    "report.select": ((), True),
}
REQUIRED_NODES = ("data", "model", "optimizer", "trainer", "landscape", "logger")


def _check_mappings(c: Mapping[str, Any]) -> None:
    """Every `MAPPING_NODES` node present (and every `REQUIRED_NODES` one) is a mapping (or null where allowed)."""
    for dotted, (keys, nullable) in MAPPING_NODES.items():
        *parents, leaf = dotted.split(".")
        node: Any = c
        for part in parents:
            node = node.get(part) or {}  # checked before its children (dict order); a null one has none
        if leaf in node or dotted in REQUIRED_NODES:
            check_mapping(dotted, node.get(leaf), keys, nullable)


def _validate_report(r: Mapping[str, Any]) -> None:
    """The report options' shapes (which keys exist is only known when the report reads the sweep's cells; the
    report package is not imported here: it pulls in pandas and matplotlib)."""
    _check_keys(r, REPORT_KEYS, "report")
    facet = r.get("facet") or []
    if not isinstance(facet, (list, tuple, str)) or not all(isinstance(k, str) for k in facet):
        fail("report.facet", facet, "must be a list of config keys or cell fields, e.g. [optimizer.lr]")
    select = r.get("select") or {}
    if not isinstance(select, Mapping):
        fail("report.select", r.get("select"), "must be a mapping {key: value or [values]}, e.g. {optimizer.lr: 0.1}")
    for key, value in select.items():
        if isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and not all(map(_scalar, value))):
            fail(f"report.select.{key}", value, "must be a value or a list of values (for a dotted key, write "
                 f"'+report.select={{{key}.<name>: <value>}}': report.select.{key}.<name>=... nests it)")  # fmt: skip
    check_distinct("report.facet", [facet] if isinstance(facet, str) else facet, ": each key splits the figures once")
    if r.get("unreached", "exclude") not in ("exclude", "include"):
        fail("report.unreached", r.get("unreached"), "must be one of exclude, include")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _validate_batchnorm_batches(c: Mapping[str, Any]) -> None:
    """BatchNorm in an MLP cannot train on 1-sample batches (a final 1-sample batch is merged by TensorLoader)."""
    if c["model"].get("arch") != "mlp" or c["model"].get("norm") != "batchnorm":
        return
    allowed = "must be >= 2 with model.norm=batchnorm in an MLP (BatchNorm needs 2 samples per batch)"
    for key, value in (
        ("data.batch_size", c["data"].get("batch_size")),
        ("data.train_size", c["data"].get("train_size")),
        ("landscape.connectivity.curve.batch_size", c["landscape"]["connectivity"]["curve"].get("batch_size")),
    ):
        if value == 1:
            fail(key, value, allowed)


def _drop(c: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = c
    for p in parents:
        node = node.get(p)
        if not isinstance(node, dict):
            return
    node.pop(leaf, None)


def _digest(c: Mapping[str, Any]) -> str:
    def default(o: Any) -> Any:
        return str(o)

    blob = json.dumps(c, sort_keys=True, default=default, allow_nan=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_hash(resolved: Mapping[str, Any], *, training_only: bool = False) -> str:
    """Identity of a cell (or, with training_only, of its trained endpoints) from the resolved config."""
    c = json.loads(json.dumps(resolved, default=str))
    for key in RUN_ONLY + (ANALYSIS_ONLY if training_only else ()):
        _drop(c, key)
    endpoints = c.get("endpoints")
    if isinstance(endpoints, dict):  # keys at their "as before" value are not part of the identity
        independent = endpoints.get("mode", "independent") == "independent"
        for key, default in ENDPOINT_DEFAULTS.items():
            if key in endpoints and (endpoints[key] == default or (independent and key in SPAWN_ONLY)):
                del endpoints[key]
    sharp = (c.get("landscape") or {}).get("sharpness")
    if isinstance(sharp, dict) and sharp.get("per_block") is False:  # added later: off is "as before"
        del sharp["per_block"]
    return _digest(c)


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values (lists and empty mappings are leaves)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`{dotted key: (old value, new value)}` for the keys that change what a cell computes (RUN_ONLY left out)."""
    a = flatten(json.loads(json.dumps(old, default=str)))
    b = flatten(json.loads(json.dumps(new, default=str)))
    keys = sorted(k for k in set(a) | set(b) if not any(k == r or k.startswith(f"{r}.") for r in RUN_ONLY))
    return {k: (a.get(k, ABSENT), b.get(k, ABSENT)) for k in keys if a.get(k, ABSENT) != b.get(k, ABSENT)}


def analysis_only(key: str) -> bool:
    """A key that only changes the post-hoc analysis (a trained endpoint stays valid)."""
    return any(key == a or key.startswith(f"{a}.") for a in ANALYSIS_ONLY)


def conflicting_changes(prev: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Why a job dir whose completed results are of config `prev` is not `config`'s: the changed keys beyond the
    analysis-only ones ({} when the training config is the same: the cell may re-analyse its endpoints there)."""
    before, after = config_hash(prev, training_only=True), config_hash(config, training_only=True)
    if before == after:
        return {}
    kept = {k: v for k, v in config_changes(prev, config).items() if not analysis_only(k)}
    return kept or {"train_hash": (before, after)}


def describe_changes(changes: Mapping[str, tuple[Any, Any]], limit: int = 4) -> str:
    """`model.width: 32 -> 24; ...` (the first `limit` changes, then how many more)."""
    shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(changes.items())[:limit])
    return shown + (f"; and {len(changes) - limit} more" if len(changes) > limit else "")


def job_dir_taken(directory: Any, changes: Mapping[str, tuple[Any, Any]], key: str = "hydra.sweep.dir") -> str:
    """The one-line refusal of a job dir holding completed results of another training config."""
    return (
        f"job dir {directory} holds completed results of another config ({describe_changes(changes)}); only "
        f"landscape.* settings may change in an existing job dir: use a new {key} or move {directory} aside"
    )

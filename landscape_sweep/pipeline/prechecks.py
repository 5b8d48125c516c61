"""The pre-check's look at the machine and the command, beyond the config values (`config.validate`).

`app.precheck` calls these before anything is written, each failing with a one-line `ConfigError` naming the key,
the value and what is allowed: the environment the cells read (`LANDSCAPE_SWEEP_LOCK_STALE_S`), output paths the
file system cannot hold (a name over its NAME_MAX, ENAMETOOLONG), launcher keys the chosen launcher does not take
(`+hydra.launcher.detach=true` on a local launcher), more torch threads than this machine's cores can sensibly
run, a model too large for the memory it would train in (estimated from `torch.device("meta")` builds), and
`report.facet`/`report.select` keys no cell of the sweep will have.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from landscape_sweep.checks import fail
from landscape_sweep.pipeline.artifacts import lock_stale_after
from landscape_sweep.pipeline.config import ConfigError, flatten
from landscape_sweep.results import CELL_KEYS, RUN_ONLY

THREADS_PER_CORE = 4  # trainer.threads on a local launcher: at most this many per core the process may use
PATH_MARGIN = 256  # characters a cell adds below its job dir (checkpoints/spawn<k>/seed<s>_data<d>/..., wandb/...)
# config keys the report never splits by (the sweep table's `NOT_HYPERPARAMETERS`: run-only keys, analysis
# settings, endpoint seeds); `report.facet`/`report.select` may name any other config key or a cell field
NOT_REPORT_KEYS = (*RUN_ONLY, "landscape", "endpoints")
GIB = 2**30


def check_environment() -> None:
    """The environment variables the cells read, checked here rather than in every cell's traceback."""
    try:
        lock_stale_after()
    except ValueError as e:
        raise ConfigError(f"{e} (seconds without a heartbeat after which another host's cell lock is stale; "
                          "unset: 600)") from None  # fmt: skip


def environment_error() -> str | None:
    """`check_environment`'s one-line error, or None: for the commands that print it and exit 2 (status, resubmit)."""
    try:
        check_environment()
    except ConfigError as e:
        return str(e)
    return None


def check_path(key: str, directory: Path) -> None:
    """A job dir the file system can hold: every name within NAME_MAX and room below it for the cell's files."""
    existing = directory
    while not _exists(existing) and existing.parent != existing:
        existing = existing.parent
    name_max, path_max = _limit(existing, "PC_NAME_MAX", 255), _limit(existing, "PC_PATH_MAX", 4096)
    for part in directory.parts:
        if len(os.fsencode(part)) > name_max:
            shown = part if len(part) <= 40 else f"{part[:20]}...{part[-12:]}"
            raise ConfigError(f"{key}: the directory name {shown!r} has {len(os.fsencode(part))} bytes; the file "
                              f"system allows {name_max} (NAME_MAX): choose a shorter {key}")  # fmt: skip
    length = len(os.fsencode(str(directory)))
    if length + PATH_MARGIN > path_max:
        raise ConfigError(f"{key}: job dir {str(directory)[:40]}... has {length} bytes; with the cell's own files "
                          f"below it that exceeds PATH_MAX ({path_max}): choose a shorter {key}")  # fmt: skip


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # ENAMETOOLONG and the like: not a usable existing dir
        return False


def _limit(path: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(path, name))
    except (OSError, ValueError):
        return default


def check_launcher_keys(cfg: DictConfig) -> None:
    """Keys under `hydra.launcher` that the launcher does not take (its config schema's fields, else its
    constructor's parameters), e.g. `+hydra.launcher.detach=true` on a local launcher: Hydra would fail with a
    multi-line TypeError after the pre-check, or the launcher would ignore the key."""
    node = OmegaConf.select(cfg, "hydra.launcher")
    target = str((node or {}).get("_target_") or "")
    if not target:
        return
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        taken = [f.name for f in dataclasses.fields(schema)]
    else:
        from hydra.utils import get_class  # deferred: Hydra; status and resubmit import prechecks

        try:
            params = inspect.signature(get_class(target).__init__).parameters
        except Exception:  # a launcher Hydra itself will name in its error
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        taken = ["_target_", *(k for k in params if k != "self")]
    for key in node:
        if key not in taken:
            shown = ", ".join(k for k in taken if k != "_target_") or "no settings"
            raise ConfigError(
                f"hydra.launcher.{key}={node[key]!r}: not a setting of {target.rsplit('.', 1)[-1]} (it takes "
                f"{shown}); detach is for hydra/launcher=slurm or slurm_gpu only"
            )


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_threads_here(trainer: Mapping[str, Any]) -> None:
    """`trainer.threads` of a cell that runs on this machine: at most THREADS_PER_CORE per usable core."""
    threads, cap = trainer.get("threads", "auto"), THREADS_PER_CORE * usable_cpus()
    if threads != "auto" and threads > cap:
        fail("trainer.threads", threads, f"this machine lets the cells use {usable_cpus()} cores: at most {cap} "
             f"threads ({THREADS_PER_CORE} a core), or auto")  # fmt: skip


def check_report_keys(configs: Iterable[Mapping[str, Any]]) -> None:
    """`report.facet`/`report.select` keys: a cell field or a config key the cells have (outside `NOT_REPORT_KEYS`),
    so the report at the end of the sweep does not fail on them after every cell has run."""
    configs = list(configs)
    if not configs:
        return
    report = configs[0].get("report") or {}
    facet = report.get("facet") or []
    wanted = [("report.facet", k) for k in ([facet] if isinstance(facet, str) else facet)]
    wanted += [("report.select", k) for k in report.get("select") or {}]
    keys = {k for c in configs for k in flatten(c) if not any(k == x or k.startswith(f"{x}.") for x in NOT_REPORT_KEYS)}
    for what, key in wanted:
        if key not in CELL_KEYS and key not in keys:
            close = sorted(k for k in keys if k.rsplit(".", 1)[-1] == str(key).rsplit(".", 1)[-1])
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            fail(what, key, f"not a cell field ({', '.join(CELL_KEYS)}) or a config key of this sweep's cells, e.g. "
                 f"optimizer.lr; landscape.*, endpoints.* and paths are not split by{hint}")  # fmt: skip


# --- memory: a model too large for where it would train ---------------------------------------------------------
def param_bytes(precision: Any) -> int:
    """Bytes a parameter takes under a Lightning precision (mixed precision keeps float32 weights)."""
    p = str(precision)
    return 8 if p.startswith("64") else 2 if p in ("16-true", "bf16-true") else 4


def optimizer_copies(optimizer: Mapping[str, Any]) -> int:
    """Parameter-sized tensors an endpoint's training holds besides its weights: gradients, the base optimizer's
    state (`bases.BASES`: momentum for SGD, both Adam moments), SAM's saved weights, the SWA average."""
    # deferred: training/ imports torch (see memory_needed)
    from landscape_sweep.training.bases import BASES
    from landscape_sweep.training.optim import resolve_cfg

    o = resolve_cfg(optimizer)
    return 1 + BASES[o["base"]].state(o) + (o["rho"] is not None) + bool(o["swa"]["enabled"])


def memory_needed(config: Mapping[str, Any]) -> tuple[int, int, str]:
    """(bytes the cell's training needs at least, bytes of its weights, how that adds up): parameters × bytes ×
    (weights + `optimizer_copies`) plus the activations of one training batch, per endpoint trained at once; the
    analysis holds every endpoint and two more models. Data, workspace and Python objects come on top."""
    # deferred: data/ and models/ import torch, which only the memory check needs of this module
    from landscape_sweep.data.datasets import data_shape, train_pool
    from landscape_sweep.models.size import model_size

    m, data, trainer = config["model"], config["data"], config["trainer"]
    in_shape, classes = data_shape(data["name"], data.get("options"))
    samples = min(train_pool(data["name"], data.get("options")), data.get("train_size") or math.inf)
    batch = int(min(data["batch_size"], samples))  # a batch larger than the train set is the whole set
    size = model_size(m["arch"], in_shape, classes, m["depth"], m["width"], m["norm"], m["activation"], batch=batch)
    b = param_bytes(trainer.get("precision", "32-true"))
    endpoints = config.get("endpoints") or {}
    n = len(endpoints.get("seeds") or [0])
    at_once = n if endpoints.get("parallel", "none") != "none" else 1
    copies = 1 + optimizer_copies(config["optimizer"])
    weights, acts = size.params * b, size.activations * 4
    train = at_once * (copies * weights + acts)
    need = max(train, (n + 2) * weights)
    batch_text = f"{acts / GIB:.3g} GiB of activations of a batch of {batch}"
    how = (f"{size.params:.3g} parameters, {weights / GIB:.3g} GiB a copy; training: {at_once} x ({copies} copies "
           f"+ {batch_text}); analysis: {n + 2} copies")  # fmt: skip
    return need, weights, how


def available_memory() -> tuple[int, str] | None:
    """(bytes this machine can still give a process, where that was read), None when unknown."""
    found = None
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        found = (kb * 1024, "MemAvailable")
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    try:  # a cgroup v2 limit (container, systemd slice) below what the machine has
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max" and (found is None or int(limit) - used < found[0]):
            found = (int(limit) - used, "the cgroup's memory.max")
    except (OSError, ValueError):
        pass
    return found


def _gpu_memory() -> tuple[int, str] | None:
    import torch  # deferred: only the memory check of a cell on a GPU asks torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory, "GPU memory of cuda:0"


def check_memory(cfg: DictConfig, config: Mapping[str, Any], local: bool) -> None:
    """Refuse a model whose training cannot fit where it would run: this machine's memory (or its GPU's) for
    local launchers, `hydra.launcher.mem_gb` for SLURM; one line naming the keys, the estimate and the memory."""
    acc = str(config["trainer"].get("accelerator", "auto"))
    gpus = OmegaConf.select(cfg, "hydra.launcher.gpus_per_node", default=None)
    if local:
        gpu = _gpu_memory() if acc in ("gpu", "cuda", "auto") else None
        host = available_memory()
    else:
        gpu = None
        mem_gb = OmegaConf.select(cfg, "hydra.launcher.mem_gb", default=None)
        host = (int(mem_gb * GIB), f"hydra.launcher.mem_gb={mem_gb}") if mem_gb else None
    on_gpu = gpu is not None or (not local and (acc in ("gpu", "cuda") or (acc == "auto" and bool(gpus))))
    m, data = config["model"], config["data"]
    which = f"model.depth={m['depth']}, model.width={m['width']}: this {m['arch']} on {data['name']}"
    try:
        need, weights, how = memory_needed(config)
    except (RuntimeError, OverflowError, ValueError) as e:  # e.g. "Storage size calculation overflowed"
        raise ConfigError(f"{which} has tensors too large to exist ({' '.join(str(e).split())[:160]}): choose a "
                          "smaller model.depth or model.width") from None  # fmt: skip
    for where, needed in ((gpu, need), (host, weights if on_gpu else need)):
        if where is not None and needed > where[0]:
            raise ConfigError(
                f"{which} needs at least {needed / GIB:.3g} GiB ({how}); {where[0] / GIB:.3g} GiB available "
                f"({where[1]}): choose a smaller model.depth, model.width or data.batch_size (or data.options)"
            )

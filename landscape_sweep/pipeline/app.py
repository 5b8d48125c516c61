"""Hydra entry point: `python -m landscape_sweep [-m] key=value ...`.

Before Hydra creates any directory, every cell of the requested run or sweep (command-line grids and
`hydra.sweeper.params` of an experiment) is composed and validated, so a bad value fails in one line
before any work: config values, the devices a local launcher would use, a real write probe of the output dir,
and each cell's job dir. A job dir that holds completed results of another config is never overwritten: only a
change of `landscape.*` settings may reuse it (the cell is re-analysed on its trained endpoints); any other change
is refused, naming the dir and the differing keys. Each job then runs one cell (`pipeline.cell.run_cell`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, read_write
from omegaconf.errors import OmegaConfBaseException

from landscape_sweep.checks import check_cells_per_job
from landscape_sweep.pipeline import prechecks, process
from landscape_sweep.pipeline.config import (
    CONF_DIR,
    ConfigError,
    check_devices_available,
    config_errors,
    config_hash,
    conflicting_changes,
    job_dir_taken,
    validate,
)
from landscape_sweep.results import CellResult, read_results

log = logging.getLogger("landscape_sweep")
_last_status: list[str] = []


# launchers whose cells run on this machine (the precheck checks their devices here)
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "LocalLauncher")


def _output_key(multirun: bool) -> str:
    return "hydra.sweep.dir" if multirun else "hydra.run.dir"


def as_job(cfg: DictConfig, multirun: bool, num: int) -> Path:
    """Make `cfg` the config of job `num` as a launcher would (job number, HydraConfig); returns its job dir:
    the run dir, or sweep dir / `hydra.sweep.subdir`."""
    if multirun:
        with read_write(cfg.hydra):
            cfg.hydra.job.num = num
            cfg.hydra.job.id = num  # as the basic and joblib launchers set it
    HydraConfig.instance().set_config(cfg)
    if not multirun:
        return Path(str(cfg.hydra.run.dir)).absolute()
    return Path(str(cfg.hydra.sweep.dir)).absolute() / str(cfg.hydra.sweep.subdir)


def _probe_writable(cfg: DictConfig, multirun: bool) -> None:
    """Create and remove a file in the output dir's nearest existing parent (root ignores permission bits)."""
    key = _output_key(multirun)
    target = Path(str(OmegaConf.select(cfg, key))).absolute()
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".landscape_sweep-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ConfigError(
            f"{key}={str(target)!r}: output dir cannot be written ({probe}: {e.strerror or e}); "
            f"choose a writable {key} or paths.log_dir"
        ) from None


def _check_launcher(cfg: DictConfig) -> None:
    """The launcher keys of our submitit launchers (`hydra.launcher.cells_per_job`), checked by the launcher itself;
    keys the launcher does not take at all (`prechecks.check_launcher_keys`)."""
    prechecks.check_launcher_keys(cfg)
    node = OmegaConf.select(cfg, "hydra.launcher")
    if node is None or "cells_per_job" not in node:
        return
    with config_errors():
        check_cells_per_job(node)


def _runs_here(cfg: DictConfig) -> bool:
    """Whether the launcher runs the cells on this machine (basic, joblib, submitit_local; not SLURM)."""
    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    return target.rsplit(".", 1)[-1] in LOCAL_LAUNCHERS


def _check_job_dir(cfg: DictConfig, config: dict[str, Any], directory: Path, multirun: bool) -> None:
    """Refuse a job dir holding completed results of another config, unless only `landscape.*` changed (the cell
    checks the same again under its lock, `cell.run_locked`: this fails fast, before anything runs)."""
    key = _output_key(multirun)
    where = f"{key}={str(OmegaConf.select(cfg, key))!r}"
    try:
        prev = read_results(directory)
    except ValueError as e:  # e.g. a results schema this version does not read
        raise ConfigError(f"{where}: {directory}/results.json cannot be read ({e}); use a new {key}") from None
    if prev is None or prev.status != "completed" or prev.config_hash == config_hash(config):
        return
    changes = conflicting_changes(prev.config, config)
    if changes:  # else: same training, other analysis settings: the cell re-analyses its trained endpoints
        raise ConfigError(f"{where}: {job_dir_taken(directory, changes, key)}")


def _check_distinct(seen: dict[Path, tuple[int, str]], cfg: DictConfig, directory: Path, num: int, shown: str) -> None:
    """Refuse two cells of one sweep in one job dir (e.g. a `hydra.sweep.subdir` that does not tell them apart):
    they would overwrite each other's results. `shown`: the cell's own overrides."""
    if directory in seen:
        first, other = seen[directory]
        subdir = OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("subdir")
        raise ConfigError(
            f"hydra.sweep.subdir={subdir!r}: cells #{first} ({other}) and #{num} ({shown}) both map to job dir "
            f"{directory} and would overwrite each other; every cell needs its own job dir (default ${{hydra.job.num}})"
        )
    seen[directory] = (num, shown)


def cell_overrides(argv: list[str]) -> tuple[bool, list[list[str]]] | None:
    """Expand the command line into each cell's overrides (None: flags Hydra handles itself, e.g. --cfg)."""
    flags = [a for a in argv if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return None
    multirun = bool(flags)
    overrides = [a for a in argv if not a.startswith("-")]
    if not multirun:
        return False, [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # deferred: Hydra's sweeper, for -m only

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="landscape_sweep"):
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        base = compose("config", overrides=fixed, return_hydra_config=True)
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    grid = parser.parse_overrides([f"{k}={v}" for k, v in params.items()]) + parsed
    return True, BasicSweeper.split_arguments(grid, None)[0]


def precheck(argv: list[str]) -> None:
    """Compose and validate every cell the command asks for; raises ConfigError (one line)."""
    expanded = cell_overrides(argv)
    if expanded is None:
        return
    multirun, jobs = expanded
    seen: dict[Path, tuple[int, str]] = {}
    configs: list[dict[str, Any]] = []
    shared = set.intersection(*(set(job) for job in jobs)) if len(jobs) > 1 else set()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="landscape_sweep"):
        for num, job in enumerate(jobs):
            cfg = compose("config", overrides=job, return_hydra_config=True)
            directory = as_job(cfg, multirun, num)
            _check_distinct(seen, cfg, directory, num, " ".join(o for o in job if o not in shared))
            prechecks.check_path(_output_key(multirun), directory)
            if num == 0:
                prechecks.check_environment()
                _probe_writable(cfg, multirun)
                _check_launcher(cfg)
            config = validate(cfg)
            if num == 0:
                process.freeze_heap()  # the imports are done (validation imports Lightning): see process.py
            if _runs_here(cfg):
                check_devices_available(config["trainer"])
                with config_errors():
                    prechecks.check_threads_here(config["trainer"])
            prechecks.check_memory(cfg, config, local=_runs_here(cfg))
            _check_job_dir(cfg, config, directory, multirun)
            configs.append(config)
    with config_errors():
        prechecks.check_report_keys(configs)


class CellRefused(CompactHydraException):
    """A cell that must not write its job dir (`cell.run_cell`'s status `refused`): the job fails with this one
    line (Hydra prints it without a traceback) and the command exits 1; nothing of the job dir was changed."""

    status = "refused"  # what the sweep's progress line shows (`hydra_callbacks.SweepProgress`)


_refused: list[str] = []  # cells this process refused: its later cells of the sweep are not started either


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> str:
    """Run one cell; returns its status (the progress line tells a `locked` cell, skipped, from a failed one)."""
    # deferred: the cell's modules (torch, Lightning) load after the pre-check, under its paused collector
    from landscape_sweep.pipeline.cell import run_cell

    process.freeze_heap()  # the first cell of the process: what the imports built is never garbage
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    job_dir = Path(hc.runtime.output_dir)
    group = Path(hc.sweep.dir).name if multirun else job_dir.name
    if _refused:  # the sweep dir holds another config's cells: as the pre-check would, run none of this sweep
        result = CellResult(status="refused", error=f"not run: cell {_refused[0]} of this sweep was refused")
    else:
        result = run_cell(cfg, job_dir, group=group)
    _last_status.append(result.status)
    msg = f"cell {job_dir}: {result.status}" + (f" ({result.error})" if result.error else "")
    level = {"completed": logging.INFO, "locked": logging.WARNING}.get(result.status, logging.ERROR)
    log.log(level, msg)
    if result.status == "refused":
        _refused.append(str(job_dir))
        raise CellRefused(f"cell {job_dir} refused: {result.error}")
    return result.status


def squash(e: Exception) -> str:
    """Hydra's multi-line composition errors on one line (e.g. unknown group options with the allowed ones)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "Config search path" not in ln]
    lines = [ln for ln in lines if not ln.startswith(("provider=", "full_key:", "object_type="))]
    return " ".join(lines).replace("Available options in", "; available options in")


def main(argv: list[str] | None = None) -> None:
    """Console entry: precheck, then Hydra. Exit 1 when a single (non-multirun) cell did not complete."""
    argv = sys.argv[1:] if argv is None else argv
    process.pause_gc()  # until the imports are done (process.py)
    try:
        precheck(argv)
    except ConfigError as e:
        print(f"landscape_sweep: config error: {e}", file=sys.stderr)
        sys.exit(2)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"landscape_sweep: config error: {squash(e)}", file=sys.stderr)
        sys.exit(2)
    process.freeze_heap()  # (done by the precheck unless it stopped early, e.g. `--cfg job`)
    hydra_main()
    process.before_exit()
    if len(_last_status) == 1 and _last_status[0] != "completed" and "-m" not in argv and "--multirun" not in argv:
        sys.exit(1)

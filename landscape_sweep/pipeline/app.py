"""Hydra entry point: `python -m landscape_sweep [-m] key=value ...`.

Before Hydra creates any directory, every cell of the requested run or sweep (command-line grids and
`hydra.sweeper.params` of an experiment) is composed and validated, so a bad value fails in one line
before any work. Each job then runs one cell (`pipeline.cell.run_cell`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from landscape_sweep.pipeline.config import CONF_DIR, ConfigError, validate

log = logging.getLogger("landscape_sweep")
_last_status: list[str] = []


def _job_dirs_writable(cfg: DictConfig, multirun: bool) -> None:
    """One-line error when the run/sweep directory (or its nearest existing parent) cannot be written."""
    target = Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir)).absolute()
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not (probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)):
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        raise ConfigError(f"{key}={str(target)!r}: output dir cannot be written ({probe} is not a writable directory)")


def cell_overrides(argv: list[str]) -> tuple[bool, list[list[str]]] | None:
    """Expand the command line into each cell's overrides (None: flags Hydra handles itself, e.g. --cfg)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    flags = [a for a in argv if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return None
    multirun = bool(flags)
    overrides = [a for a in argv if not a.startswith("-")]
    if not multirun:
        return False, [overrides]
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
    from hydra import compose, initialize_config_dir

    expanded = cell_overrides(argv)
    if expanded is None:
        return
    multirun, jobs = expanded
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="landscape_sweep"):
        for i, job in enumerate(jobs):
            cfg = compose("config", overrides=job, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            if i == 0:
                _job_dirs_writable(cfg, multirun)
            validate(cfg)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    from landscape_sweep.pipeline.cell import one_line, run_cell
    from landscape_sweep.results import CellResult, write_results

    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():  # a SLURM job uses exactly the CPUs it was given
        import torch

        torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    job_dir = Path(hc.runtime.output_dir)
    group = Path(hc.sweep.dir if multirun else hc.run.dir).name
    try:
        result = run_cell(cfg, job_dir, group=group)
    except ConfigError as e:  # only reachable when the precheck was bypassed (e.g. hydra flags)
        result = CellResult(status="failed", error=one_line(e), config=OmegaConf.to_container(cfg, resolve=False))
        write_results(job_dir, result)
    _last_status.append(result.status)
    msg = f"cell {job_dir}: {result.status}" + (f" ({result.error})" if result.error else "")
    (log.info if result.status == "completed" else log.error)(msg)


def _squash(e: Exception) -> str:
    """Hydra's multi-line composition errors on one line (e.g. unknown group options with the allowed ones)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "Config search path" not in ln]
    lines = [ln for ln in lines if not ln.startswith(("provider=", "full_key:", "object_type="))]
    return " ".join(lines).replace("Available options in", "; available options in")


def main(argv: list[str] | None = None) -> None:
    """Console entry: precheck, then Hydra. Exit 1 when a single (non-multirun) cell did not complete."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    argv = sys.argv[1:] if argv is None else argv
    try:
        precheck(argv)
    except ConfigError as e:
        print(f"landscape_sweep: config error: {e}", file=sys.stderr)
        sys.exit(2)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"landscape_sweep: config error: {_squash(e)}", file=sys.stderr)
        sys.exit(2)
    hydra_main()
    if len(_last_status) == 1 and _last_status[0] != "completed" and "-m" not in argv and "--multirun" not in argv:
        sys.exit(1)

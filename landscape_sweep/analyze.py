"""`python -m landscape_sweep.analyze <job_dir|sweep_dir> [landscape overrides]`: re-analyse trained cells.

For each completed cell, the trained endpoints are loaded from their `checkpoint` (`checkpoints/seed<k>/final.pt`,
weights_only) and the cell's analysis (`pipeline.cell.analyse`, the same code a training run uses) is run again with
the new `landscape` settings (e.g. `landscape=thorough`). Only the analysis parts of results.json change
(`config.landscape`, `config_hash`, endpoint `sharpness`/`trajectory`/`loss_surface`/`ood`, `connectivity` with its
OOD curves, spawn cells' `instability`/`stable_epoch`, `timing_s.analysis`), written atomically; the results go
to a new W&B run (`job_type=analysis`) in the cell's group. A sweep's report is rebuilt.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

from landscape_sweep.files import dir_problem
from landscape_sweep.results import job_dirs, read_results, results_path

log = logging.getLogger("landscape_sweep.analyze")


def landscape_config(overrides: list[str]) -> dict[str, Any]:
    """The `landscape` node composed from the config tree with `overrides` (all must be landscape keys)."""
    # deferred: Hydra and the pipeline package load only past the argument checks (a bad path answers at once)
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from landscape_sweep.pipeline.config import CONF_DIR, ConfigError

    for o in overrides:
        if not o.lstrip("+~").startswith("landscape"):
            raise ConfigError(
                f"{o}: analyze takes landscape overrides only (e.g. landscape=thorough, "
                "landscape.connectivity.num_points=41)"
            )
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="analyze"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return OmegaConf.to_container(cfg.landscape, resolve=True)


def cell_dirs(path: str | Path) -> list[Path]:
    """`path` itself when it is a job dir, else every job dir below it holding results.json (in job order)."""
    return [d for d in job_dirs(path) if results_path(d).is_file()]


def reanalyze_cell(job_dir: Path, landscape: dict[str, Any]):
    """Re-run the analysis of one completed cell with new landscape settings; returns the new `CellResult`.

    Holds the cell's lock meanwhile, so a training run and a re-analysis never write one job dir at once.
    """
    from landscape_sweep.pipeline.artifacts import CellLock, lock_stale_after  # deferred: the pipeline package

    lock = CellLock(job_dir, stale_after=lock_stale_after())
    if not lock.acquire():
        raise RuntimeError(f"{job_dir}: being run by {lock.holder}; re-analyse it when that has finished")
    try:
        return _reanalyze_locked(job_dir, landscape)
    finally:
        lock.release()


def _reanalyze_locked(job_dir: Path, landscape: dict[str, Any]):
    # deferred: torch and Lightning, only when a cell is re-analysed
    from landscape_sweep.pipeline import cell, endpoint, measures, spawn
    from landscape_sweep.pipeline.config import config_hash, validate
    from landscape_sweep.pipeline.tracking import Tracker

    prev = read_results(job_dir)
    if prev is None or prev.status != "completed":
        status = None if prev is None else prev.status
        raise ValueError(f"{job_dir}: status is {status!r}; only completed cells can be re-analysed")
    config = validate({**prev.config, "landscape": landscape})
    result = dataclasses.replace(prev, config=config, config_hash=config_hash(config), timing_s=dict(prev.timing_s))
    data = cell.load_cell_data(config).to(endpoint.training_device(config))
    try:
        paths = [job_dir / e.checkpoint for e in prev.endpoints]  # independent endpoints or the last k's children
        models = [endpoint.load_endpoint(config, data, p) for p in paths]
        spawned = spawn.load_spawned(config, data, job_dir) if config["endpoints"].get("mode") == "spawn" else None
    except Exception as e:  # unreadable or missing weights: only retraining can restore them
        raise RuntimeError(f"{job_dir}: trained endpoints unreadable ({endpoint.one_line(e)}); re-run the cell") from e
    group = (config["logger"].get("wandb") or {}).get("group") or job_dir.parent.name
    tracker = Tracker(config, job_dir, group=group, job_type="analysis", name=f"{job_dir.name}-analysis")
    ok = False
    try:
        t0 = time.perf_counter()
        ad = measures.analysis_data(config, data)
        result = cell.analyse(config, data, models, result, ad)
        if spawned is not None:  # the instability paths between the children of every spawn epoch
            result = spawn.finish(result, spawned, ad, config)
        cell.record(result, job_dir, tracker)
        log.info("%s: re-analysed in %.1fs", job_dir, time.perf_counter() - t0)
        ok = True
    except Exception as e:
        raise RuntimeError(f"{job_dir}: analysis failed: {endpoint.one_line(e)}") from e
    finally:
        tracker.close(exit_code=0 if ok else 1)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_sweep.analyze", description=__doc__)
    ap.add_argument("path", help="a job directory (holding results.json) or a sweep directory")
    ap.add_argument("overrides", nargs="*", help="landscape overrides, e.g. landscape=thorough")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")

    from landscape_sweep.pipeline.config import ConfigError  # deferred: the pipeline package, past the arguments

    path = Path(args.path)
    problem = dir_problem(path)
    cells = cell_dirs(path) if problem is None else []
    if not cells:
        why = "no results.json found there" if problem is None else f"not a readable directory ({problem})"
        print(f"landscape_sweep.analyze: path={str(path)!r}: {why}", file=sys.stderr)
        return 2
    try:
        landscape = checked_landscape(args.overrides, cells)
    except ConfigError as e:
        print(f"landscape_sweep.analyze: config error: {e}", file=sys.stderr)
        return 2
    failures = 0
    for job in cells:
        try:
            r = reanalyze_cell(job, landscape)
            print(f"{job}: re-analysed ({len(r.connectivity)} paths)")
        except Exception as e:  # one bad cell must not stop the others
            failures += 1
            print(f"{job}: {' '.join(str(e).split())}", file=sys.stderr)
    if len(cells) > 1 or cells[0] != path:
        from landscape_sweep.report import build_report  # deferred: pandas and matplotlib, for a sweep only

        build_report(str(path))
    return 1 if failures else 0


def checked_landscape(overrides: list[str], cells: list[Path]) -> dict[str, Any]:
    """The composed `landscape` node, checked before any cell is touched: Hydra's composition errors (an unknown
    `landscape=<option>` or key), the environment the cell locks read, and the new settings against every completed
    cell's config (e.g. checkpoint epochs beyond its trainer.max_epochs); ConfigError in one line."""
    # deferred: Hydra and the pipeline package load only past the argument checks (a bad path answers at once)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from landscape_sweep.pipeline.app import squash
    from landscape_sweep.pipeline.config import ConfigError, validate
    from landscape_sweep.pipeline.prechecks import check_environment

    check_environment()
    try:
        landscape = landscape_config(overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(squash(e)) from None
    for job in cells:
        try:
            prev = read_results(job)
        except Exception:  # reported for that cell when it is re-analysed
            continue
        if prev is not None and prev.status == "completed":
            try:
                validate({**prev.config, "landscape": landscape})
            except ConfigError as e:
                raise ConfigError(f"{e} (cell {job})") from None
    return landscape


if __name__ == "__main__":
    sys.exit(main())

"""Re-analysis without retraining: `python -m landscape_sweep.analyze <job_dir|sweep_dir> landscape=thorough`.

For each completed cell, the trained endpoints are loaded from `checkpoints/seed<k>/final.pt` (weights_only),
the landscape analysis is run with the new `landscape` settings, and only the analysis parts of results.json
(`config.landscape`, `config_hash`, endpoint `sharpness`/`trajectory`, `connectivity`, `timing_s.analysis`) are
rewritten, atomically. Results go to a new W&B run (`job_type=analysis`) in the cell's group.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from landscape_sweep.pipeline.config import CONF_DIR, ConfigError, config_hash, validate
from landscape_sweep.results import RESULTS_NAME, read_json, write_json

log = logging.getLogger(__name__)


def landscape_config(overrides: list[str]) -> dict[str, Any]:
    """The `landscape` node composed from the config tree with `overrides` (all must be landscape keys)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

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
    from landscape_sweep.report.table import job_dirs

    return [d for d in job_dirs(path) if (d / RESULTS_NAME).is_file()]


def reanalyze_cell(job_dir: Path, landscape: dict[str, Any]) -> dict[str, Any]:
    """Re-run the analysis of one completed cell with new landscape settings; returns the new results."""
    from landscape_sweep.pipeline.cell import (
        endpoint_dir,
        load_cell_data,
        load_endpoint,
        one_line,
        record_analysis,
        training_device,
    )
    from landscape_sweep.pipeline.tracking import Tracker

    prev = read_json(job_dir / RESULTS_NAME)
    if prev is None or prev.get("status") != "completed":
        raise ValueError(
            f"{job_dir}: status is {None if prev is None else prev.get('status')!r}; "
            "only completed cells can be re-analysed"
        )
    c = validate({**prev["config"], "landscape": landscape})
    result = {
        **prev,
        "config": c,
        "config_hash": config_hash(c),
        "endpoints": [dict(e) for e in prev["endpoints"]],
        "timing_s": dict(prev.get("timing_s") or {}),
    }
    for e in result["endpoints"]:  # keep the in-training trajectory, drop the old final point
        e["trajectory"] = [p for p in e.get("trajectory", []) if p.get("epoch") != e.get("epochs")]
    data = load_cell_data(c).to(training_device(c))
    models = [load_endpoint(c, data, endpoint_dir(job_dir, s) / "final.pt") for s in c["endpoints"]["seeds"]]
    group = (c["logger"].get("wandb") or {}).get("group") or job_dir.parent.name
    tracker = Tracker(c, job_dir, group=group, job_type="analysis", name=f"{job_dir.name}-analysis")
    ok = False
    try:
        t0 = time.perf_counter()
        record_analysis(c, data, models, result, job_dir, tracker)
        log.info("%s: re-analysed in %.1fs", job_dir, time.perf_counter() - t0)
        ok = True
    except Exception as e:
        raise RuntimeError(f"{job_dir}: analysis failed: {one_line(e)}") from e
    finally:
        tracker.close(exit_code=0 if ok else 1)
    write_json(job_dir / RESULTS_NAME, result)
    return result

"""Log a sweep report as one W&B run (job_type="report"): the sweep table, the τ table and the figures.

Offline unless WANDB_MODE says otherwise; the run lives in `<sweep_dir>/wandb/`; `finish()` always runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from landscape_sweep.results import CellResult


def _json_safe(df: pd.DataFrame) -> pd.DataFrame:
    """NaN -> None (W&B tables are JSON)."""
    return df.astype(object).where(pd.notna(df), None)


def _project(results: list[CellResult]) -> tuple[str, str | None]:
    """(project, entity) of the cells' own W&B runs, so the report sits next to them."""
    for r in results:
        w = (r.config.get("logger") or {}).get("wandb") or {}
        if w.get("project"):
            return w["project"], w.get("entity")
    return "landscape_sweep", None


def log_report(
    sweep_dir: str | Path,
    results: list[CellResult],
    table: pd.DataFrame,
    tau: pd.DataFrame,
    figures: dict[str, Path],
    out_dir: str | Path | None = None,
) -> Path:
    """Write one W&B run for the report (under `out_dir`, default the sweep dir); returns the run's directory."""
    import wandb

    root = Path(sweep_dir).resolve()
    project, entity = _project(results)
    counts = {f"cells/{k}": int(v) for k, v in table["status"].value_counts().items()}
    run = wandb.init(
        project=project,
        entity=entity,
        group=root.name,
        job_type="report",
        name=f"report-{root.name}",
        tags=["report"],
        config={"sweep_dir": str(root), "num_jobs": len(table)},
        dir=str(Path(out_dir).resolve() if out_dir is not None else root),
        mode=os.environ.get("WANDB_MODE") or "offline",
        reinit="create_new",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
    )
    exit_code = 1
    try:
        payload: dict[str, Any] = {"sweep_results": wandb.Table(dataframe=_json_safe(table))}
        if not tau.empty:
            payload["kendall_tau"] = wandb.Table(dataframe=_json_safe(tau))
        payload.update({f"figures/{name}": wandb.Image(str(p)) for name, p in figures.items()})
        run.log(payload)
        run.summary.update(counts)
        exit_code = 0
    finally:
        run_dir = Path(run.dir).parent
        run.finish(exit_code=exit_code)
    return run_dir

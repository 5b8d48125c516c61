"""Sweep report: reads results.json files only (never training code).

`build_report(sweep_dir)` writes into the sweep directory: `sweep_results.csv` (one row per cell),
`kendall_tau.csv` (measures vs generalization gap), `figures/*.png` and `report.md`; with `wandb=True` also one
W&B run (job_type="report").
"""

from __future__ import annotations

from pathlib import Path

from landscape_sweep.files import atomic_write_text
from landscape_sweep.report.correlation import TAU_NAME, correlation_table, granulated_tau, kendall
from landscape_sweep.report.markdown import render_report
from landscape_sweep.report.plots import barrier_vs_params, curves_grid, heatmap
from landscape_sweep.report.quality import quality_warnings
from landscape_sweep.report.table import TABLE_NAME, load_results, methods_of, sweep_table, write_table

__all__ = [
    "load_results",
    "sweep_table",
    "write_table",
    "build_report",
    "correlation_table",
    "granulated_tau",
    "kendall",
]

REPORT_NAME = "report.md"
FIGURES_DIR = "figures"
# heatmap file stem -> (table column stem, colorbar label); one heatmap per path method is added
HEATMAPS = {
    "hessian_top_eig": ("hessian_top_eig", "top Hessian eigenvalue"),
    "test_acc": ("test_acc", "test accuracy"),
    "gen_gap": ("gen_gap", "generalization gap (train acc − test acc)"),
}


def build_report(sweep_dir: str | Path, wandb: bool = False) -> dict[str, str]:
    """Write every report artefact of a sweep; returns {name: path} (plus `wandb_run` when logged)."""
    root = Path(sweep_dir)
    results = load_results(root)
    table = sweep_table(results)
    paths: dict[str, Path] = {"table": root / TABLE_NAME, "correlations": root / TAU_NAME}
    atomic_write_text(paths["table"], table.to_csv(index=False))
    tau = correlation_table(table)
    atomic_write_text(paths["correlations"], tau.to_csv(index=False))

    figdir, methods, notes = root / FIGURES_DIR, methods_of(results), []
    specs = {f"loss_barrier_{m}": (f"{m}/loss_barrier", f"train loss barrier ({m})") for m in methods} | HEATMAPS
    figures: dict[str, Path | None] = {}
    for name, (column, label) in specs.items():
        figures[f"heatmap_{name}"] = heatmap(table, column, label, figdir / f"heatmap_{name}.png")
    figures["barrier_vs_params"] = barrier_vs_params(table, figdir / "barrier_vs_params.png")
    figures["curves_grid"] = curves_grid(results, table, figdir / "curves_grid.png", methods)
    if not methods:
        notes.append("No cell has connectivity results (fewer than 2 endpoints?): no barrier heatmaps or curves.")
    notes += [f"`{n}` skipped: no completed cell has a value for it." for n, p in figures.items() if p is None]
    drawn = {n: p for n, p in figures.items() if p is not None}

    paths["report"] = root / REPORT_NAME
    warnings = quality_warnings(results)
    atomic_write_text(paths["report"], render_report(root, table, tau, drawn, notes, warnings))
    paths.update(drawn)
    if wandb:
        from landscape_sweep.report.wandb_log import log_report

        paths["wandb_run"] = log_report(root, results, table, tau, drawn)
    return {k: str(v) for k, v in paths.items()}

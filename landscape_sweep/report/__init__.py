"""Sweep report: reads results.json files only (never training code)."""

from landscape_sweep.report.table import load_results, sweep_table, write_table

__all__ = ["load_results", "sweep_table", "write_table", "build_report"]


def build_report(sweep_dir: str) -> dict:
    """Write every report artefact of a sweep; returns {name: path}."""
    path, _ = write_table(sweep_dir)
    return {"table": str(path)}

"""A cell's files beside results.json (curves CSV, PNG) and what goes to its W&B run.

W&B names are chosen so a dashboard can plot them against `model.depth`, `model.width`, `optimizer` from the
run config: `landscape/<method>/<measure>`, `sharpness/<measure>`, `test/acc`, `gen_gap`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from landscape_sweep.results import atomic_write_text

PATH_MEASURES = (
    "loss_barrier",
    "error_barrier",
    "test_loss_barrier",
    "test_error_barrier",
    "loss_barrier_mean",
    "error_barrier_mean",
    "path_length",
    "endpoint_distance",
    "path_curvature",
    "arc_chord_ratio",
)
SHARPNESS_MEASURES = ("hessian_trace", "worst_case", "average_case", "adaptive_worst_case", "adaptive_average_case")
CURVE_COLUMNS = ("pair", "method", "t", "train_loss", "train_acc", "test_loss", "test_acc")


def _mean(values: list[Any]) -> float | None:
    v = [float(x) for x in values if isinstance(x, (int, float)) and math.isfinite(x)]
    return sum(v) / len(v) if v else None


def summary_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Cell-level landscape summaries: means over endpoints (sharpness) and over endpoint pairs (paths)."""
    out: dict[str, float | None] = {}
    sharp = [e.get("sharpness") or {} for e in result.get("endpoints", [])]
    if any(s.get("hessian_top_eigs") for s in sharp):
        out["sharpness/hessian_top_eig"] = _mean([s["hessian_top_eigs"][0] for s in sharp if s.get("hessian_top_eigs")])
    for key in SHARPNESS_MEASURES:
        if any(key in s for s in sharp):
            out[f"sharpness/{key}"] = _mean([s.get(key) for s in sharp])
    for method in dict.fromkeys(e["method"] for e in result.get("connectivity", [])):
        entries = [e for e in result["connectivity"] if e["method"] == method]
        for key in PATH_MEASURES:
            out[f"landscape/{method}/{key}"] = _mean([e.get(key) for e in entries])
        along = [max(e["sharpness_along_path"]["hessian_top_eig"]) for e in entries if e.get("sharpness_along_path")]
        if along:
            out[f"landscape/{method}/max_hessian_top_eig_along_path"] = _mean(along)
    return {k: v for k, v in out.items() if v is not None}


def curves_csv(connectivity: list[dict[str, Any]]) -> str:
    """Every evaluated path as long-format CSV: one row per (pair, method, t)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CURVE_COLUMNS)
    for e in connectivity:
        pair = "-".join(str(i) for i in e["pair"])
        for i, t in enumerate(e["t"]):
            w.writerow([pair, e["method"], t, *(None if e.get(k) is None else e[k][i] for k in CURVE_COLUMNS[3:])])
    return buf.getvalue()


def plot_connectivity(connectivity: list[dict[str, Any]], title: str, path: Path) -> Path:
    """PNG: loss and error along each path, train (solid) and test (dashed), one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    colors = {}
    for e in connectivity:
        color = colors.setdefault(e["method"], f"C{len(colors)}")
        label = f"{e['method']} {e['pair'][0]}-{e['pair'][1]}"
        for ax, key, transform in ((axes[0], "loss", lambda v: v), (axes[1], "acc", lambda v: 1 - v)):
            for split, style in (("train", "-"), ("test", "--")):
                ys = e.get(f"{split}_{key}")
                if ys is not None:
                    ax.plot(
                        e["t"],
                        [transform(v) for v in ys],
                        style,
                        color=color,
                        label=f"{label} ({split})",
                        marker="o",
                        markersize=2.5,
                    )
    for ax, name in zip(axes, ("loss", "error (1 - accuracy)")):
        ax.set_xlabel("t (position along the path)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def cell_title(result: dict[str, Any]) -> str:
    c = result.get("cell") or {}
    return (
        f"{c.get('dataset')} {c.get('arch')} depth={c.get('depth')} width={c.get('width')} "
        f"{c.get('optimizer')} ({c.get('num_params')} params)"
    )


def write_cell_artifacts(job_dir: Path, result: dict[str, Any]) -> dict[str, Path]:
    """curves.csv and connectivity.png of a cell (nothing when it has no connectivity)."""
    conn = result.get("connectivity") or []
    if not conn:
        return {}
    atomic_write_text(job_dir / "curves.csv", curves_csv(conn))
    return {
        "curves": job_dir / "curves.csv",
        "connectivity_png": plot_connectivity(conn, cell_title(result), job_dir / "connectivity.png"),
    }


def log_cell_to_wandb(run: Any, result: dict[str, Any], files: dict[str, Path]) -> None:
    """Summary metrics, one table + line plots per path measure, the Hessian spectrum and the cell PNG."""
    import wandb

    run.summary.update(summary_metrics(result))
    payload: dict[str, Any] = {}
    conn = result.get("connectivity") or []
    for method in dict.fromkeys(e["method"] for e in conn):
        rows = [
            [f"{e['pair'][0]}-{e['pair'][1]}", t, *(None if e.get(k) is None else e[k][i] for k in CURVE_COLUMNS[3:])]
            for e in conn
            if e["method"] == method
            for i, t in enumerate(e["t"])
        ]
        payload[f"connectivity/{method}"] = wandb.Table(columns=["pair", *CURVE_COLUMNS[2:]], data=rows)
    if conn:
        for split in ("train", "test"):
            series = [e for e in conn if e.get(f"{split}_loss") is not None]
            if series:
                payload[f"plots/{split}_loss_along_paths"] = wandb.plot.line_series(
                    xs=series[0]["t"],
                    ys=[e[f"{split}_loss"] for e in series],
                    keys=[f"{e['method']} {e['pair'][0]}-{e['pair'][1]}" for e in series],
                    title=f"{split} loss along paths",
                    xname="t",
                )
    for e in result.get("endpoints", []):
        s = e.get("sharpness") or {}
        spec = s.get("hessian_spectrum")
        if spec:
            table = wandb.Table(columns=["eigenvalue", "weight"], data=list(zip(spec["nodes"], spec["weights"])))
            payload[f"plots/seed{e['seed']}_hessian_spectrum"] = wandb.plot.scatter(
                table, "eigenvalue", "weight", title=f"seed {e['seed']}: Hessian spectrum (SLQ nodes)"
            )
        if s.get("hessian_top_eigs"):
            table = wandb.Table(
                columns=["rank", "eigenvalue"], data=[[i + 1, v] for i, v in enumerate(s["hessian_top_eigs"])]
            )
            payload[f"plots/seed{e['seed']}_hessian_top_eigs"] = wandb.plot.bar(
                table, "rank", "eigenvalue", title=f"seed {e['seed']}: top Hessian eigenvalues"
            )
    if files.get("connectivity_png"):
        payload["cell/connectivity"] = wandb.Image(str(files["connectivity_png"]))
    if payload:
        run.log(payload)

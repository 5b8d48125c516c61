"""A cell's files beside results.json: `curves.csv` (every path, long format) and `connectivity.png`."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

from landscape_sweep.results import CellResult, PathEntry, atomic_write_text

CURVE_COLUMNS = ("pair", "method", "t", "train_loss", "train_acc", "test_loss", "test_acc")


def curve_rows(paths: list[PathEntry]) -> list[list]:
    """One row per (pair, method, t) with the CURVE_COLUMNS values (None where a split was not evaluated)."""
    rows = []
    for p in paths:
        pair = "-".join(str(i) for i in p.pair)
        for i, t in enumerate(p.t):
            values = [None if getattr(p, k) is None else getattr(p, k)[i] for k in CURVE_COLUMNS[3:]]
            rows.append([pair, p.method, t, *values])
    return rows


def curves_csv(paths: list[PathEntry]) -> str:
    """Every evaluated path as long-format CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CURVE_COLUMNS)
    writer.writerows(curve_rows(paths))
    return buf.getvalue()


def plot_connectivity(paths: list[PathEntry], title: str, path: Path) -> Path:
    """PNG: loss and error along each path, train (solid) and test (dashed), one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    colors: dict[str, str] = {}
    for p in paths:
        color = colors.setdefault(p.method, f"C{len(colors)}")
        label = f"{p.method} {p.pair[0]}-{p.pair[1]}"
        for ax, values in ((axes[0], (p.train_loss, p.test_loss)), (axes[1], (p.train_acc, p.test_acc))):
            for split, style, ys in zip(("train", "test"), ("-", "--"), values):
                if ys is None:
                    continue
                ys = ys if ax is axes[0] else [1 - v for v in ys]
                ax.plot(p.t, ys, style, color=color, label=f"{label} ({split})", marker="o", markersize=2.5)
    for ax, name in zip(axes, ("loss", "error (1 - accuracy)")):
        ax.set_xlabel("t (position along the path)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def cell_title(result: CellResult) -> str:
    c = result.cell
    return (
        f"{c.get('dataset')} {c.get('arch')} depth={c.get('depth')} width={c.get('width')} "
        f"{c.get('optimizer')} ({c.get('num_params')} params)"
    )


def write_cell_artifacts(job_dir: Path, result: CellResult) -> dict[str, Path]:
    """curves.csv and connectivity.png of a cell (nothing when it has no connectivity)."""
    if not result.connectivity:
        return {}
    atomic_write_text(job_dir / "curves.csv", curves_csv(result.connectivity))
    png = plot_connectivity(result.connectivity, cell_title(result), job_dir / "connectivity.png")
    return {"curves": job_dir / "curves.csv", "connectivity_png": png}

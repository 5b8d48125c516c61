"""The report's instability figure and stable-epoch table (spawn cells), from a small synthetic sweep."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from landscape_sweep.report import build_report
from landscape_sweep.report.instability import spawn_epochs
from tests._support.sweep import completed, write

# test error barrier (vs the children's mean) of the three child pairs, per spawn epoch k, per width
BARRIERS = {
    16: {0: (0.30, 0.32, 0.34), 2: (0.10, 0.12, 0.14), 4: (0.05, 0.06, 0.07)},  # never stable
    64: {0: (0.20, 0.22, 0.24), 2: (0.01, 0.015, 0.02), 4: (0.0, 0.005, 0.01)},  # stable from k=2
}


def spawn_cell(width: int) -> dict:
    records = []
    for k, values in BARRIERS[width].items():
        pairs = [{"pair": p, "test_error_barrier_mean": v} for p, v in zip(([0, 1], [0, 2], [1, 2]), values)]
        stable = sum(values) / 3 < 0.02
        records.append({"spawn_epoch": k, "children": [0, 1, 2], "pairs": pairs, "stable": stable})
    stable = next((r["spawn_epoch"] for r in records if r["stable"]), None)
    return {**completed(1, width, "sgd"), "schema": 2, "instability": records, "stable_epoch": stable}


def test_instability_figure_and_stable_epoch_table(tmp_path):
    root = tmp_path / "sweep"
    for job, width in enumerate(BARRIERS):
        write(root / str(job), spawn_cell(width), f"model.width={width}")
    paths = build_report(root, workers=1)
    assert paths["instability"].endswith("figures/instability.png")
    table = pd.read_csv(paths["table"])
    assert spawn_epochs(table) == [0, 2, 4]
    row = table.set_index("width").loc[64]
    assert row["instability/2/test_error_barrier_mean_n"] == 3 and row["stable_epoch_mean"] == 2
    text = Path(paths["report"]).read_text()
    section = text.split("## Instability (spawned children)")[1].split("\n## ")[0]
    lines = {line.split(" | ")[0].strip("| "): line for line in section.splitlines() if line.startswith("| ")}
    # width 16, k=0: 32 % ± 2 %, the jackknife over children: twice std/√3 = 1.2 % (pairs share children)
    assert "| none ≤ 4 |" in lines["0"] and "| 32 ± 2 (3) |" in lines["0"]
    assert "| 2 |" in lines["1"] and "| 1.5 ± 0.6 (3) |" in lines["1"]
    assert "**instability** — " in text and "2 % stability threshold" in text


def test_no_instability_figure_without_spawn_cells(built):
    _, paths = built
    assert "instability" not in paths
    assert "## Instability" not in Path(paths["report"]).read_text()

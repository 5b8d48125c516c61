"""report.md written by build_report: counts, cell table, τ table with hand-computed values, failures, figures."""

from __future__ import annotations

import re
from pathlib import Path

from landscape_sweep.report import build_report
from tests._support.sweep import INVALID, add_invalid, make_sweep


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_report_sections(built):
    root, paths = built
    text = Path(paths["report"]).read_text()
    assert paths["report"] == str(root / "report.md")
    assert text.startswith("# Sweep report: sweep\n")
    status = section(text, "Status")
    for s, n in (("completed", 8), ("failed", 1), ("diverged", 1), ("missing", 1)):
        assert f"| {s} | {n} |" in status
    cells = section(text, "Cells")
    assert "| job | status | arch | depth | width | optimizer | params | test acc | gen gap | barrier linear | " \
        "max loss linear | barrier linear_aligned | max loss linear_aligned | top eig |" in cells  # fmt: skip
    # mean ± standard error (n): std/√3 over endpoints, the endpoint jackknife over pairs (2x std/√3 here)
    assert (
        "| 0 | completed | mlp | 1 | 16 | sgd | 800 | 0.89 ± 0 (3) | 0.1 ± 0.0058 (3) | 1 ± 0.12 (3) | 1.05 ± 0.12 (3) "
        "| 0.05 ± 0 (3) | 0.1 ± 0 (3) | 1 ± 0.29 (3) |" in cells
    )
    assert "| 8 | failed | mlp | 4 | 16 | sgd |" in cells


def test_tau_table(built):
    text = Path(built[1]["report"]).read_text()
    tau = section(text, "Landscape measures vs generalization")
    assert "**Target: generalization gap** (`gen_gap_mean`)" in tau and "out-of-distribution" not in tau
    assert "| measure | n | τ (all cells) | p | ψ depth | ψ width | ψ optimizer | Ψ |" in tau
    assert "| hessian_top_eig | 8 | +0.500 | 0.11 | +0.500 (4) | +0.500 (4) | +1.000 (4) | +0.667 |" in tau
    assert "| linear/loss_barrier | 8 | +1.000 | 5e-05 | +1.000 (4) | +1.000 (4) | +1.000 (4) | +1.000 |" in tau
    assert "| linear_aligned/loss_barrier | 8 | n/a | n/a | n/a (0) | n/a (0) | n/a (0) | n/a |" in tau
    assert "Not varied (no ψ): label_noise, train_size, arch." in tau


def test_failures_listed_with_errors(built):
    """Each cell that did not complete, with the overrides that define it (those all jobs share left out)."""
    text = Path(built[1]["report"]).read_text()
    problems = section(text, "Failed, diverged, missing and invalid cells").strip().splitlines()
    assert problems == [
        "- `8` **failed** (arch=mlp, depth=4, width=16, optimizer=sgd, overrides: `model.depth=4 model.width=16 "
        "optimizer=sgd`): RuntimeError: out of memory",
        "- `9` **diverged** (arch=mlp, depth=4, width=64, optimizer=sam, overrides: `model.depth=4 model.width=64 "
        "optimizer=sam optimizer.lr=10`): non-finite training loss at epoch 3 (seed 0)",
        "- `10` **missing** (overrides: `model.depth=8 optimizer=sgd`): no results.json (job killed, timed out or "
        "still running)",
    ]


def test_invalid_results_listed_and_counted(tmp_path):
    """Unreadable results.json files are counted and listed with their reason; the rest of the report is built."""
    root = add_invalid(make_sweep(tmp_path / "s", connectivity=False))
    text = Path(build_report(root)["report"]).read_text()
    assert "| invalid | 3 |" in section(text, "Status") and "| completed | 8 |" in section(text, "Status")
    problems = section(text, "Failed, diverged, missing and invalid cells").strip().splitlines()
    assert problems[3:] == [
        f"- `{job}` **invalid** (overrides: `seed={job}`): {reason}" for job, (_, reason) in INVALID.items()
    ]
    assert "| hessian_top_eig | 8 | +0.500 | 0.11 |" in text  # the completed cells' numbers are intact


def test_figures_linked_relatively(built):
    root, paths = built
    text = Path(paths["report"]).read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    pngs = sorted(Path(p).relative_to(root).as_posix() for p in paths.values() if p.endswith(".png"))
    assert sorted(links) == pngs and "figures/curves_p1.png" in links and "figures/flat_vs_path.png" in links
    assert all((root / link).is_file() for link in links)
    figures = section(text, "Figures")
    assert "**heatmap_test_acc** — Each mark: one cell, mean over its endpoints" in figures
    assert "`linear/loss_barrier`" not in text or "## Columns of sweep_results.csv" in text


def test_large_figure_sets_linked_not_inlined(tmp_path):
    """More than INLINE_MAX pages: report.md links an index page that shows them all."""
    from landscape_sweep.report.markdown import INLINE_MAX, figure_index, figures_section
    from landscape_sweep.report.plots import Drawn

    root = tmp_path
    pages = [root / "figures" / f"curves_p{k}.png" for k in range(1, INLINE_MAX + 3)]
    text = figures_section(root, {"curves": Drawn(pages, "One page per optimizer.")})
    assert "![" not in text and f"[{len(pages)} pages: figures/curves.md](figures/curves.md)" in text
    index = figure_index(root, "curves", Drawn(pages, "One page per optimizer."))
    assert index.count("![") == len(pages) and "(curves_p1.png)" in index


def test_no_connectivity(tmp_path):
    root = make_sweep(tmp_path / "s", connectivity=False)
    paths = build_report(root)
    text = Path(paths["report"]).read_text()
    figures = {k for k in paths if k.startswith(("heatmap", "curves", "barrier", "flat"))}
    assert figures == {"heatmap_hessian_top_eig", "heatmap_test_acc", "heatmap_gen_gap"}
    assert "No cell has connectivity results" in text
    assert not any(k.startswith("trend_") and "barrier" in k for k in paths)
    assert "| hessian_top_eig | 8 | +0.500 | 0.11 |" in text and "barrier linear" not in section(text, "Cells")
    assert not (root / "figures" / "barrier_vs_params.png").exists()

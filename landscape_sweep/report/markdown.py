"""report.md: the sweep at a glance, readable on GitHub (tables, τ, failures, figures with relative links)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from landscape_sweep.report.correlation import HYPERPARAMETERS, TARGET
from landscape_sweep.report.plots import FACET_KEYS

COLUMNS_DOC = """\
One row per job directory. `<x>_mean` / `<x>_std` / `<x>_n`: mean, sample standard deviation and number of the
finite values over endpoints (metrics, sharpness) or endpoint pairs (paths); std is empty for n < 2.

| column | meaning |
|---|---|
| `job` | job dir relative to the sweep |
| `status` | completed / failed / diverged; missing: no results.json; invalid: a results.json this version cannot read |
| `error` | one-line error (failed, diverged) or reason (missing, invalid) |
| `overrides` | the job's Hydra overrides (`.hydra/overrides.yaml`): what defines the cell on the command line |
| `dataset` … `label_noise` | the cell fields (`num_params`: trainable parameters of one endpoint) |
| `num_endpoints` | endpoints (seeds) trained |
| `cfg:<key>` | config values that differ between cells (the hyperparameters of the granulated τ) |
| `train_loss`, `train_acc`, `test_loss`, `test_acc` | final metrics, over endpoints |
| `gen_gap` | generalization gap `train_acc − test_acc`, over endpoints |
| `hessian_top_eig`, `hessian_trace` | top Hessian eigenvalue and Hutchinson trace at each endpoint, over endpoints |
| `worst_case`, `average_case`, `adaptive_worst_case`, `adaptive_average_case` | sharpness kinds, over endpoints |
| `<method>/num_pairs`, `…/unconverged` | pairs with a path of this method; fitted curves that hit their epoch cap |
| `<method>/loss_barrier`, `…/error_barrier` | train loss / error barrier of the path (vs the chord), over pairs |
| `<method>/test_loss_barrier`, `…/test_error_barrier` | the same on the test split |
| `<method>/<barrier>_mean` | the same barriers against the endpoints' mean (Frankle et al., Ainsworth et al.) |
| `…/path_length`, `…/endpoint_distance`, `…/arc_chord_ratio` | geometry of the path in weight space |
| `<method>/path_curvature` | total turning angle of the path (rad) |
| `<method>/max_hessian_top_eig_along_path` | largest top Hessian eigenvalue measured along the path |
| `train_time_s`, `analysis_time_s`, `total_time_s` | wall time of the cell |
"""


def _num(v: Any, digits: int = 3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "" if v is None else str(v)
    return "" if not math.isfinite(v) else f"{v:.{digits}g}"


def _pm(row: pd.Series, stem: str) -> str:
    """`mean ± std (n)`; `mean (n=1)` without a spread."""
    m, s, n = row.get(f"{stem}_mean"), row.get(f"{stem}_std"), row.get(f"{stem}_n")
    if m is None or not math.isfinite(float(m)):
        return ""
    n = int(n) if n is not None and math.isfinite(float(n)) else 0
    if n < 2:
        return f"{_num(m)} (n=1)"
    return f"{_num(m)} ± {_num(s, 2)} ({n})"


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])


def cells_section(table: pd.DataFrame) -> str:
    done = table[table["status"] == "completed"]
    extra = [k for k in FACET_KEYS if k != "arch" and k in done and done[k].astype(str).nunique() > 1]
    methods = [c.split("/")[0] for c in table.columns if c.endswith("/num_pairs")]
    headers = ["job", "status", "arch", "depth", "width", "optimizer", *extra, "params", "test acc", "gen gap"]
    headers += [f"barrier {m}" for m in methods] + ["top eig"]
    rows = []
    for _, r in table.iterrows():
        row = [r["job"], r["status"], *[_num(r.get(k), 6) for k in ("arch", "depth", "width", "optimizer", *extra)]]
        row += [_num(r.get("num_params"), 12), _pm(r, "test_acc"), _pm(r, "gen_gap")]
        row += [_pm(r, f"{m}/loss_barrier") for m in methods] + [_pm(r, "hessian_top_eig")]
        rows.append(row)
    note = (
        "Values: mean ± sample std (n) over endpoints (barriers: over endpoint pairs); barrier = train loss barrier; "
        "n=1: a single value, no spread.\n\n"
    )
    return note + md_table(headers, rows)


def tau_section(tau: pd.DataFrame) -> str:
    if tau.empty:
        return "_No landscape measure has a value in any completed cell: no correlations._"
    hps = [c[4:-1] for c in tau.columns if c.startswith("psi[")]
    headers = ["measure", "n", "τ (all cells)", *[f"ψ {h}" for h in hps], "Ψ"]
    na = lambda v: "n/a" if not math.isfinite(float(v)) else f"{float(v):+.3f}"  # noqa: E731
    rows = [
        [r["measure"], int(r["n"]), na(r["tau"]), *[f"{na(r[f'psi[{h}]'])} ({int(r[f'groups[{h}]'])})" for h in hps]]
        + [na(r["Psi"])]
        for _, r in tau.iterrows()
    ]
    fixed = [h for h in HYPERPARAMETERS[:6] if h not in hps]  # the grid's usual axes
    text = (
        f"Kendall τ_b between each measure (mean over endpoints/pairs) and the generalization gap "
        f"(`{TARGET}`) across completed cells; n = cells with both values (τ needs n ≥ 3). "
        "ψ h: granulated τ (Jiang et al. 2020): mean τ over groups of cells that differ only in h (every other "
        "varied hyperparameter, config values included, held fixed) "
        "(number of groups in brackets); Ψ: mean of the ψ. Positive: the measure ranks cells like the gap.\n\n"
    )
    if not hps:
        text += "_No hyperparameter varies among completed cells: no granulated τ._\n\n"
    elif fixed:
        text += f"Not varied (no ψ): {', '.join(fixed)}.\n\n"
    return text + md_table(headers, rows)


def _defining(overrides: pd.Series) -> list[list[str]]:
    """Each job's overrides without those every job that has overrides shares (the sweep's fixed settings): what
    defines the cell. All of a job's overrides when none is its own (e.g. a single job)."""
    tokens = [str(o).split() if isinstance(o, str) else [] for o in overrides]
    known = [set(t) for t in tokens if t]
    shared = set.intersection(*known) if len(known) > 1 else set()
    return [[o for o in t if o not in shared] or t for t in tokens]


def problems_section(table: pd.DataFrame) -> str:
    """One line per job that did not complete: status, cell fields, the overrides that define it, the error."""
    if "overrides" not in table:
        table = table.assign(overrides="")
    table = table.assign(_defining=_defining(table["overrides"]))
    bad = table[table["status"] != "completed"]
    if bad.empty:
        return "All cells completed."
    lines = []
    for _, r in bad.iterrows():
        where = [f"{k}={_num(r[k], 6)}" for k in ("arch", "depth", "width", "optimizer") if pd.notna(r.get(k))]
        if r["_defining"]:
            where.append("overrides: `" + " ".join(r["_defining"]) + "`")
        lines.append(
            f"- `{r['job']}` **{r['status']}**" + (f" ({', '.join(where)})" if where else "") + f": {r['error'] or '—'}"
        )
    return "\n".join(lines)


def render_report(
    sweep_dir: str | Path,
    table: pd.DataFrame,
    tau: pd.DataFrame,
    figures: dict[str, Path],
    notes: list[str],
    warnings: list[str] = (),
) -> str:
    """The whole report.md text; figure links are relative to the sweep directory."""
    root = Path(sweep_dir)
    counts = table["status"].value_counts()
    status = md_table(["status", "cells"], [[s, int(counts.get(s, 0))] for s in counts.index])
    figs = "\n\n".join(f"**{name}**\n\n![{name}]({p.relative_to(root).as_posix()})" for name, p in figures.items())
    parts = [
        f"# Sweep report: {root.resolve().name}",
        f"Sweep directory: `{root.resolve()}` — {len(table)} job(s). Table: `sweep_results.csv`; "
        "correlations: `kendall_tau.csv`.",
        "## Status\n\n" + status,
        "## Quality of the estimates\n\n" + ("\n".join(f"- ⚠ {w}" for w in warnings) if warnings else "No warnings."),
        "## Cells\n\n" + cells_section(table),
        "## Landscape measures vs generalization gap\n\n" + tau_section(tau),
        "## Failed, diverged, missing and invalid cells\n\n" + problems_section(table),
        "## Figures\n\n" + (figs or "_No figures._"),
    ]
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes))
    parts.append("## Columns of sweep_results.csv\n\n" + COLUMNS_DOC)
    return "\n\n".join(parts) + "\n"

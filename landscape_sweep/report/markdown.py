"""report.md: the sweep at a glance, readable on GitHub (tables, τ, failures, figures with relative links)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from landscape_sweep.report import facets as fc
from landscape_sweep.report.block_plots import blocks_section
from landscape_sweep.report.correlation import HYPERPARAMETERS
from landscape_sweep.report.instability import stable_section
from landscape_sweep.report.md import md_table
from landscape_sweep.report.plots import Drawn
from landscape_sweep.results import PATH_METHODS

MAX_ROWS = 100  # longer tables in report.md are cut (the CSV files have every row)
INLINE_MAX = 4  # figure sets with more pages are linked through an index page, not inlined

TABLE_FILE = "sweep_results.csv"
COLUMNS_DOC = """\
One row per job directory. `<x>_mean` / `<x>_std` / `<x>_n`: mean, sample standard deviation (the spread of the
values) and number of the finite values over endpoints (metrics, sharpness) or endpoint pairs (paths); std is empty
for n < 2. `<x>_se` / `<x>_dof`: the standard error of the mean and its degrees of freedom — over endpoints
std/√n with n − 1; over endpoint pairs, which share endpoints, the jackknife over the K endpoints with K − 1
(std/√n would understate it up to 2x). `<x>_ci95_lo` / `<x>_ci95_hi`: the 95 % interval mean ± t(0.975, dof)·se.

| column | meaning |
|---|---|
| `job` | job dir relative to the sweep |
| `status` | completed / failed / diverged; missing: no results.json (or never started); invalid: unreadable |
| `error` | one-line error (failed, diverged) or reason (missing, invalid) |
| `overrides` | the job's Hydra overrides (`.hydra/overrides.yaml`): what defines the cell on the command line |
| `dataset` … `label_noise` | the cell fields (`num_params`: trainable parameters of one endpoint) |
| `num_endpoints` | endpoints (seeds) trained |
| `stop_reached` | with `trainer.stop_at`: whether every endpoint reached the criterion (empty without it) |
| `cfg:<key>` | config values that differ between cells (the hyperparameters of the granulated τ) |
| `train_loss`, `train_acc`, `test_loss`, `test_acc` | final metrics, over endpoints |
| `gen_gap` | generalization gap `train_acc − test_acc`, over endpoints |
| `hessian_top_eig`, `hessian_trace` | top Hessian eigenvalue and Hutchinson trace at each endpoint, over endpoints |
| `worst_case`, `average_case`, `adaptive_worst_case`, `adaptive_average_case` | sharpness kinds, over endpoints |
| `average_case_ratio` | when recorded: average_case / (σ²/2 · trace), beyond the quadratic term; over endpoints |
| `block/<block>/hessian_top_eig`, `…/hessian_trace` | per-block curvature (its parameters only), over endpoints |
| `block/first_trace_fraction`, `…/last_trace_fraction` | the first / last block's share of the block traces |
| `block/sharpest_position` | where the block with the largest top eigenvalue sits (0 = first block, 1 = head) |
| `<method>` | {methods} |
| `<method>/num_pairs`, `…/unconverged` | pairs with a path of this method; fitted curves that hit their epoch cap |
| `<method>/loss_barrier`, `…/error_barrier` | train loss / error barrier of the path (vs the chord), over pairs |
| `<method>/test_loss_barrier`, `…/test_error_barrier` | the same on the test split |
| `<method>/<barrier>_mean` | the same barriers against the endpoints' mean (Frankle et al., Ainsworth et al.) |
| `…/path_length`, `…/endpoint_distance`, `…/arc_chord_ratio` | geometry of the path in weight space |
| `<method>/path_curvature` | total turning angle of the path (rad) |
| `<method>/max_hessian_top_eig_along_path` | largest top Hessian eigenvalue measured along the path |
| `<method>/max_train_loss`, `…/max_test_loss` | highest train / test loss along the path (beside the barrier) |
| `ood/<set>/acc`, `…/loss`, `…/gap` | accuracy, loss on each OOD set (`data.ood`); test acc − its acc; over endpoints |
| `ood_gap` | test acc − the mean accuracy over the shifted OOD sets (control sets left out), over endpoints |
| `<method>/ood/<set>/loss_barrier`, `…/error_barrier` | the path's barriers on an OOD set, over pairs |
| `instability/<k>/<barrier>` | spawn cells: a linear-path barrier between children of spawn epoch k, over pairs |
| `stable_epoch` | spawn cells: earliest k whose mean test error barrier (vs the children's mean) is < 2 % (n=1) |
| `<measure>/width_b`, `…/width_b_lo`, `…/width_b_hi` | the group's exponent b and its 95 % interval (4+ widths) |
| `<measure>/width_slope`, `…/width_slope_lo`, `…/width_slope_hi` | the group's change per doubling of width, 95 % |
| `<measure>/width_plateau`, `…/depth_plateau` | what the measure does along width / depth (`plateau at 64`, …) |
| `data_time_s`, `train_time_s`, `analysis_time_s`, `total_time_s` | wall time of the cell |
"""


def methods_doc() -> str:
    """The path methods for the column list: `name` (note), in registry order."""
    return ", ".join(f"`{m.name}`" + (f" ({m.note})" if m.note else "") for m in PATH_METHODS.values())


def _num(v: Any, digits: int = 3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "" if v is None else str(v)
    return "" if not math.isfinite(v) else f"{v:.{digits}g}"


def _pm(row: pd.Series, stem: str) -> str:
    """`mean ± se (n)`: the standard error of the mean (over pairs: the endpoint jackknife); `mean (n=1)` or
    `mean (n, no se)` without one."""
    m, se, n = row.get(f"{stem}_mean"), row.get(f"{stem}_se"), row.get(f"{stem}_n")
    if m is None or not math.isfinite(float(m)):
        return ""
    n = int(n) if n is not None and math.isfinite(float(n)) else 0
    if n < 2:
        return f"{_num(m)} (n=1)"
    if se is None or not math.isfinite(float(se)):
        return f"{_num(m)} ({n}, no se)"
    return f"{_num(m)} ± {_num(se, 2)} ({n})"


def cells_section(table: pd.DataFrame) -> str:
    extra = [k for k in fc.facets(table, fc.GRID) if k != "arch"]
    methods = [c.split("/")[0] for c in table.columns if c.endswith("/num_pairs")]
    ood = [c[:-5] for c in table.columns if c.startswith("ood/") and c.endswith("/acc_mean")]
    headers = ["job", "status", "arch", "depth", "width", "optimizer", *map(fc.short, extra), "params", "test acc"]
    headers += [f"{o[4:-4]} acc" for o in ood] + (["OOD gap"] if ood else []) + ["gen gap"]
    headers += [h for m in methods for h in (f"barrier {m}", f"max loss {m}")] + ["top eig"]
    rows = []
    for _, r in table.head(MAX_ROWS).iterrows():
        row = [r["job"], r["status"], *[_num(r.get(k), 6) for k in ("arch", "depth", "width", "optimizer", *extra)]]
        row += [_num(r.get("num_params"), 12), _pm(r, "test_acc"), *[_pm(r, o) for o in ood]]
        row += ([_pm(r, "ood_gap")] if ood else []) + [_pm(r, "gen_gap")]
        row += [_pm(r, f"{m}/{k}") for m in methods for k in ("loss_barrier", "max_train_loss")]
        row += [_pm(r, "hessian_top_eig")]
        rows.append(row)
    note = (
        "Values: mean ± standard error (n) over endpoints (std/√n) or endpoint pairs (barriers, max loss: the "
        "jackknife over endpoints, since pairs share endpoints). ± se is not a 95 % interval: with 3 endpoints that "
        "is mean ± 4.3 se (t with 2 dof); the intervals and the sample std are in `sweep_results.csv`. Barrier = "
        "train loss barrier (vs the chord); max loss = the highest train loss along the path; n=1: a single value, "
        "no error; OOD: accuracy on each shifted set (`data.ood`), gap = test − OOD acc.\n\n"
    )
    return note + md_table(headers, rows) + _cut(len(table), "cells", TABLE_FILE)


def paired_section(paired: pd.DataFrame) -> str:
    """Each optimizer against the baseline on cells that differ only in the optimizer (`paired.paired_table`)."""
    if paired is None or paired.empty:
        return "_Needs completed cells that differ only in the optimizer: no paired comparison._"
    base = paired["baseline"].iloc[0]
    text = (
        f"Each optimizer against `{base}` on cells that differ only in the optimizer (cell pairs). Difference: "
        f"optimizer − {base}, the mean over cell pairs of the mean paired difference within each: endpoints paired by "
        "seed (same initialisation and data order), paths by method and their endpoints' seeds. 95 % CI: t over the "
        "cell pairs' mean differences (one cell pair: t over seeds, or the jackknife over seeds for paths). Lower: "
        "paired endpoints/paths (and cell pairs) where the optimizer's value is lower — better for losses, gaps, "
        "sharpness and barriers, worse for accuracy. All rows in `paired_optimizer.csv`.\n\n"
    )
    parts = []
    for opt, g in paired.groupby("optimizer", sort=False):
        how = set(g["ci"])
        head = f"**{opt} − {base}**" + (f" (95 % CI: {next(iter(how))})" if len(how) == 1 else "")
        headers = ["measure", f"{opt} − {base} [95 % CI]", "lower (paired units)", "lower (cell pairs)"]
        rows = [[r["measure"], _ci(r["mean_diff"], r["ci95_lo"], r["ci95_hi"], "+.3g"), f"{r['lower']} of {r['n']}",
                 f"{r['cell_pairs_lower']} of {r['cell_pairs']}"] + ([r["ci"]] if len(how) > 1 else [])
                for _, r in g.iterrows()]  # fmt: skip
        parts.append(head + "\n\n" + md_table(headers + (["CI"] if len(how) > 1 else []), rows))
    return text + "\n\n".join(parts)


def unreached_section(table: pd.DataFrame, details: dict[str, str], included: bool) -> str:
    """The cells with an endpoint that never reached `trainer.stop_at`, with their train loss, and where they went."""
    rows = []
    for _, r in table[table["job"].astype(str).isin(details)].iterrows():
        cell = [_num(r.get(k), 6) for k in ("depth", "width", "optimizer")]
        rows.append([r["job"], *cell, _pm(r, "train_loss"), details[str(r["job"])]])
    where = (
        "Included in the trends, τ and the paired comparison (`report.unreached=include`)."
        if included
        else "Left out of the trends, τ and the paired comparison (`report.unreached=include` puts them back); the "
        "cell table and the per-cell figures (heatmaps, curves, surfaces) keep them."
    )
    text = f"Their endpoints stopped at `trainer.max_epochs` short of `trainer.stop_at`: not comparable. {where}\n\n"
    headers = ["job", "depth", "width", "optimizer", "train loss", "stop criterion"]
    return text + md_table(headers, rows)


def _cut(n: int, what: str, file: str) -> str:
    return f"\n\n_First {MAX_ROWS} of {n} {what}; all of them are in `{file}`._" if n > MAX_ROWS else ""


def tau_section(tau: pd.DataFrame, targets: dict[str, str]) -> str:
    if tau.empty:
        return "_No landscape measure has a value in any completed cell: no correlations._"
    parts = []
    for target, name in targets.items():
        sub = tau[tau["target"] == target] if "target" in tau else tau
        if sub.empty:
            continue
        hps = [c[4:-1] for c in sub.columns if c.startswith("psi[") and sub[c].notna().any()]
        headers = ["measure", "n", "τ (all cells)", "p", *[f"ψ {fc.short(h)}" for h in hps], "Ψ"]
        na = lambda v: "n/a" if not math.isfinite(float(v)) else f"{float(v):+.3f}"  # noqa: E731
        rows = [
            [r["measure"], int(r["n"]), na(r["tau"]), _p(r.get("p"))]
            + [f"{na(r[f'psi[{h}]'])} ({int(r[f'groups[{h}]'])})" for h in hps]
            + [na(r["Psi"])]
            for _, r in sub.iterrows()
        ]
        parts.append(f"**Target: {name}** (`{target}`)\n\n" + md_table(headers, rows))
    fixed = [h for h in HYPERPARAMETERS[:6] if not any(f"psi[{h}]" == c for c in tau.columns)]
    text = (
        "Kendall τ_b between each measure (mean over endpoints/pairs) and each target across completed cells; "
        "n = cells with both values (τ needs n ≥ 3). ψ h: granulated τ (Jiang et al. 2020): mean τ over groups of "
        "cells that differ only in h (every other varied hyperparameter, config values included, held fixed) "
        "(number of groups in brackets); Ψ: mean of the ψ. Positive: the measure ranks cells like the target. "
        "p: two-sided p-value of τ under independence (exact over all orderings for n ≤ 7, else scipy's). ψ has no "
        "p-value: a group of 2 cells gives τ = ±1 only, of 3 cells ±1 or ±1/3, so ψ over a few small groups is a "
        "sign vote, not evidence of a trend.\n\n"
    )
    if not any(c.startswith("psi[") for c in tau.columns):
        text += "_No hyperparameter varies among completed cells: no granulated τ._\n\n"
    elif fixed:
        text += f"Not varied (no ψ): {', '.join(fixed)}.\n\n"
    return text + "\n\n".join(parts)


def _p(v: Any) -> str:
    """A p-value to two significant digits; `n/a` when there is none."""
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.2g}"


def _ci(v: float, lo: float, hi: float, fmt: str = "+.2g") -> str:
    """`v [lo, hi]`; `v [n/a]` without an interval."""
    if not all(math.isfinite(float(x)) for x in (lo, hi)):
        return f"{v:{fmt}} [n/a]"
    return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def _width_trend(r: pd.Series) -> str:
    """The exponent with its 95 % interval where the widths support one (`b = …`, `(c=0)` for the log-log fit),
    else the change per doubling of width (`Δ/2× …`), else why neither."""
    if r.get("model") and math.isfinite(float(r.get("b", math.nan))):
        return "b = " + _ci(r["b"], r["b_lo"], r["b_hi"], ".2f") + (" (c=0)" if r["model"] == "a·w^-b" else "")
    if math.isfinite(float(r.get("slope", math.nan))):
        return "Δ/2× " + _ci(r["slope"], r["slope_lo"], r["slope_hi"])
    return f"n/a ({r.get('reason') or 'not fitted'})"


def _depth_trend(r: pd.Series) -> str:
    """`τ (n=…, p=…)`: Kendall τ vs depth with the points it rests on."""
    n = int(r["tau_n"]) if math.isfinite(float(r.get("tau_n", math.nan))) else int(r["n_points"])
    return f"{_num(r['tau'])} (n={n}, p={_p(r.get('tau_p'))})" if math.isfinite(float(r["tau"])) else f"n/a (n={n})"


WIDTH_NOTE = (
    "Trend: an exponent only where the widths support one, b of `a·w^-b + c` from 6 widths, of `a·w^-b` fitted "
    "in log-log from 4 (c=0), with its 95 % interval from the cells' own standard errors (negative b: grows with "
    "width; theory predicts b = 1/2 for the barrier of aligned two-layer networks); with fewer widths `Δ/2×`, the "
    "change per doubling of width (least squares on log2 w) with its 95 % interval from the cells' standard "
    "errors (Welch–Satterthwaite t). "
)


def trends_section(tr: pd.DataFrame, axis: str) -> str:
    """One row per group of cells along `axis`: for each measure its fitted exponent (width) or τ vs the axis
    (depth), and its plateau."""
    sub = tr[tr["axis"] == axis] if not tr.empty else tr
    if sub.empty:
        return f"_The sweep does not vary {axis} (or no measure has values): no trends along {axis}._"
    keys = [k for k in sub.columns[: list(sub.columns).index("measure")] if sub[k].notna().any()]
    keys += [k for k in ("width", "depth") if k in sub and k != axis and k not in keys and sub[k].notna().any()]
    measures = [m for m in dict.fromkeys(sub["measure"]) if m.endswith("loss_barrier") or m in ("test_acc", "ood_gap")]
    headers = [fc.short(k) for k in keys] + ["n"]
    for m in measures:
        headers += [f"{m} trend" if axis == "width" else f"{m} τ", f"{m} along {axis}"]
    rows = []
    for key, g in sub.groupby(keys, sort=False, dropna=False) if keys else [((), sub)]:
        key = key if isinstance(key, tuple) else (key,)
        by = g.set_index("measure")
        row = [_num(k, 6) for k in key] + [int(g["n_points"].max())]
        for m in measures:
            if m not in by.index:
                row += ["", ""]
                continue
            r = by.loc[m]
            row += [_width_trend(r) if axis == "width" else _depth_trend(r), r["plateau"]]
        rows.append(row)
    text = (
        f"Per group of cells that differ only in {axis} (every other varied hyperparameter fixed); n: cells. "
        + (WIDTH_NOTE if axis == "width" else "τ: Kendall τ of the measure vs depth, over n depths, with its "
           "two-sided exact p-value (over 3 depths τ is ±1 or ±1/3, and even τ = ±1 has p = 1/3). ")
        + f"Along {axis}: `plateau at x` (improves up to x, then by no more than the cells' spread, the sample std "
        f"over endpoints/pairs), `still improving` (by more than the spread at the largest {axis}), `worsens` or "
        f"`worsens after x` (worse by more than the spread), `no trend within spread`. Every measure in "
        "`trends.csv`.\n\n"
    )  # fmt: skip
    return text + md_table(headers, rows[:MAX_ROWS]) + _cut(len(rows), "groups", "trends.csv")


def flat_section(flat_tau: pd.DataFrame) -> str:
    if flat_tau.empty:
        return "_Needs endpoint sharpness and path measures in completed cells._"
    opts = [c[4:-1] for c in flat_tau.columns if c.startswith("tau[")]
    headers = ["macroscopic (endpoint)", "microscopic (path)", "n", "τ (all cells)", "p", *[f"τ {o}" for o in opts]]
    na = lambda v, n: "n/a" if not math.isfinite(float(v)) else f"{float(v):+.3f} ({int(n)})"  # noqa: E731
    rows = [
        [r["macro"], r["micro"], int(r["n"]), na(r["tau"], r["n"]), _p(r.get("p"))]
        + [na(r[f"tau[{o}]"], r[f"n[{o}]"]) for o in opts]
        for _, r in flat_tau.iterrows()
    ]
    text = (
        "Kendall τ_b between the flatness of the minima (means over endpoints) and the geometry of the paths between "
        "them (means over pairs), over all completed cells and within each optimizer (n in brackets); p: two-sided "
        "p-value of the overall τ. Positive: sharper minima come with higher / more curved / sharper paths.\n\n"
    )
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


def figures_section(root: Path, figures: dict[str, Drawn]) -> str:
    """Each figure with its caption; sets of more than INLINE_MAX pages are linked through `figures/<name>.md`."""
    parts = []
    for name, d in figures.items():
        if len(d.paths) <= INLINE_MAX:
            imgs = "\n\n".join(f"![{name}]({p.relative_to(root).as_posix()})" for p in d.paths)
        else:
            imgs = f"[{len(d.paths)} pages: figures/{name}.md](figures/{name}.md)"
        parts.append(f"**{name}** — {d.caption}\n\n{imgs}")
    return "\n\n".join(parts) or "_No figures._"


def figure_index(root: Path, name: str, d: Drawn) -> str:
    """The index page of a large figure set (in `figures/`): caption, then every page."""
    pages = "\n\n".join(f"![{p.name}]({p.relative_to(root / 'figures').as_posix()})" for p in d.paths)
    return f"# {name}\n\n{d.caption}\n\n{pages}\n"


def render_report(
    sweep_dir: str | Path,
    table: pd.DataFrame,
    tau: pd.DataFrame,
    figures: dict[str, Drawn],
    notes: list[str],
    warnings: list[str] = (),
    trends: pd.DataFrame | None = None,
    flat_tau: pd.DataFrame | None = None,
    options: fc.Options = fc.DEFAULT,
    targets: dict[str, str] | None = None,
    paired: pd.DataFrame | None = None,
    unreached: dict[str, str] | None = None,
    source: str | Path | None = None,
) -> str:
    """The whole report.md text; figure links are relative to `sweep_dir`, where the report is written. `paired`:
    the paired optimizer table; `unreached`: {job: detail} of the cells that never reached `trainer.stop_at`;
    `source`: the sweep dir when the report is written elsewhere (`--out`)."""
    root = Path(sweep_dir)
    swept = Path(source) if source is not None else root
    trends = pd.DataFrame() if trends is None else trends
    flat_tau = pd.DataFrame() if flat_tau is None else flat_tau
    targets = targets or {"gen_gap_mean": "generalization gap"}
    included = options.unreached == "include"
    counts = table["status"].value_counts()
    status = md_table(["status", "cells"], [[s, int(counts.get(s, 0))] for s in counts.index])
    chosen = ""
    if options.facet or options.select:
        chosen = "\n\nFigures: " + "; ".join(
            [f"split by {', '.join(options.facet)}"] * bool(options.facet)
            + [f"only cells with {k} in {{{', '.join(v)}}}" for k, v in options.select.items()]
        ) + " (report.facet / report.select); tables and CSV files: every cell."  # fmt: skip
    parts = [
        f"# Sweep report: {swept.resolve().name}",
        f"Sweep directory: `{swept.resolve()}` — {len(table)} job(s). Table: `{TABLE_FILE}`; "
        "correlations: `kendall_tau.csv`; trends: `trends.csv`"
        + ("; optimizers compared: `paired_optimizer.csv`." if paired is not None and len(paired) else ".")
        + chosen,
        "## Status\n\n" + status,
        "## Quality of the estimates\n\n" + ("\n".join(f"- ⚠ {w}" for w in warnings) if warnings else "No warnings."),
        "## Cells\n\n" + cells_section(table),
        *(
            [f"## Cells that never reached the stop criterion\n\n{unreached_section(table, unreached, included)}"]
            if unreached
            else []
        ),  # fmt: skip
        "## Optimizers compared (paired)\n\n" + paired_section(paired),
        "## Trends with width\n\n" + trends_section(trends, "width"),
        "## Trends with depth\n\n" + trends_section(trends, "depth"),
        "## Flat minima vs path geometry\n\n" + flat_section(flat_tau),
        *(["## Where sharpness concentrates (per block)\n\n" + s] if (s := blocks_section(table)) else []),
        *(["## Instability (spawned children)\n\n" + s] if (s := stable_section(table)) else []),
        "## Landscape measures vs generalization\n\n" + tau_section(tau, targets),
        "## Failed, diverged, missing and invalid cells\n\n" + problems_section(table),
        "## Figures\n\n" + figures_section(root, figures),
    ]
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes))
    parts.append(f"## Columns of {TABLE_FILE}\n\n" + COLUMNS_DOC.replace("{methods}", methods_doc()))
    return "\n\n".join(parts) + "\n"

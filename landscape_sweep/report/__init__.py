"""Sweep report: reads results.json files only (never training code).

`build_report(sweep_dir)` writes into the sweep directory: `sweep_results.csv` (one row per cell, with the trend
of the cell's group), `kendall_tau.csv` (measures vs the generalization gap and, when measured, the
out-of-distribution gap), `trends.csv` (slopes, exponents where the widths support one, and what each measure does
along width and depth), `flat_vs_path_tau.csv`, `paired_optimizer.csv` (each optimizer against the baseline on
cells that differ only in it), `figures/` and `report.md`; with `wandb=True` also one W&B run (job_type="report").
Cells with an endpoint that never reached `trainer.stop_at` are left out of the trends, τ and the paired table
unless `report.unreached=include`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from landscape_sweep.files import atomic_write_text
from landscape_sweep.report import facets as fc
from landscape_sweep.report.correlation import TAU_NAME, correlation_table, granulated_tau, kendall
from landscape_sweep.report.figures import FigureInputs, figure_jobs, remove_stale_figures
from landscape_sweep.report.markdown import INLINE_MAX, figure_index, render_report
from landscape_sweep.report.paired import PAIRED_NAME, paired_table
from landscape_sweep.report.plots import Drawn
from landscape_sweep.report.quality import quality_warnings, train_loss_spread, unreached_details, unreached_jobs
from landscape_sweep.report.table import (
    NOT_HYPERPARAMETERS,
    TABLE_NAME,
    flat_config,
    load_results,
    methods_of,
    sweep_table,
    write_table,
)
from landscape_sweep.report.trend_plots import flat_vs_path_tau, has_values, micro_measures
from landscape_sweep.report.trends import trend_table
from landscape_sweep.results import CellResult, curve_methods

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
TRENDS_NAME = "trends.csv"
FLAT_TAU_NAME = "flat_vs_path_tau.csv"
TARGETS = {"gen_gap_mean": "generalization gap", "ood_gap_mean": "out-of-distribution gap (test acc − OOD acc)"}


def trend_measures(table: pd.DataFrame, methods: list[str]) -> dict[str, str]:
    """Measures fitted along width and depth: each barrier kind, the path's maximum train loss (`NOT_DRAWN`: in
    trends.csv only), path curvature and sharpness, endpoint sharpness (top eigenvalue), test accuracy and OOD
    accuracy and gap — those with a value in a completed cell. All but `figures.NOT_DRAWN` are drawn too."""
    names = {f"{m}/loss_barrier": f"loss barrier ({m})" for m in methods}
    names |= {f"{m}/max_train_loss": f"max train loss along the path ({m})" for m in methods}
    names |= {f"{m}/path_curvature": f"path curvature ({m}, rad)" for m in methods if m in curve_methods()}
    along = [m for m in methods if has_values(table, f"{m}/max_hessian_top_eig_along_path")]
    if along:  # the first path that measured it: one figure, not one per method
        names[f"{along[0]}/max_hessian_top_eig_along_path"] = f"max top eigenvalue along path ({along[0]})"
    names |= {"hessian_top_eig": "top Hessian eigenvalue"}
    names |= {"test_acc": "test accuracy", "ood_gap": "OOD gap (test acc − OOD acc)"}
    ood = [c.removesuffix("_mean") for c in table.columns if c.startswith("ood/") and c.endswith("/acc_mean")]
    names |= {c: f"OOD accuracy ({c[4:-4]})" for c in ood}
    return {k: v for k, v in names.items() if has_values(table, k)}


def trends(table: pd.DataFrame, measures: dict[str, str], workers: int | None = None) -> pd.DataFrame:
    """`trend_table` of every measure along every axis the sweep varies (≥ 2 values among completed cells), the
    fits spread over `workers` processes like the figures."""
    done = table[table["status"] == "completed"]
    jobs: dict[str, Callable[[], Any]] = {}
    for axis, by in (("width", ("optimizer", "depth")), ("depth", ("optimizer", "width"))):
        if axis in done and done[axis].nunique() >= 2:
            for m in measures:
                jobs[f"{axis}:{m}"] = lambda m=m, a=axis, b=by: trend_table(table, m, axis=a, by=b)
    parts = [p for p in run_jobs(jobs, None, workers).values() if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def with_trends(table: pd.DataFrame, tr: pd.DataFrame, excluded: Sequence[str] = ()) -> pd.DataFrame:
    """The sweep table plus, per cell, its group's trend: `<measure>/width_b`, `…/width_b_lo`, `…/width_b_hi` (the
    exponent and its 95 % interval, where the widths support one), `…/width_slope`, `…/width_slope_lo`,
    `…/width_slope_hi` (change per doubling), `…/width_plateau`, `…/depth_plateau` (labels); a group's values
    repeat on each of its cells, except the `excluded` jobs (left out of the trends: empty)."""
    if tr.empty:
        return table
    out = table.copy()
    for (measure, axis), g in tr.groupby(["measure", "axis"], sort=False):
        keys = [k for k in g.columns if k in table.columns and k != axis and g[k].notna().any()]
        cols = {"plateau": f"{measure}/{axis}_plateau"}
        if axis == "width":
            cols |= {k: f"{measure}/width_{k}" for k in ("b", "b_lo", "b_hi", "slope", "slope_lo", "slope_hi")}
        sub = g[keys + list(cols)].rename(columns=cols)
        for k in keys:  # join on string values: a key column holds NaN for missing cells
            sub[k] = sub[k].astype(str)
        left = out[keys].astype(str)
        out = pd.concat([out, left.merge(sub, on=keys, how="left").drop(columns=keys).set_index(out.index)], axis=1)
        out.loc[out["job"].astype(str).isin(excluded), list(cols.values())] = None
    return out


_JOBS: list[tuple[str, Callable[[], Any]]] = []  # the jobs forked workers inherit
_PARENT: list[int] = []  # the pid of the process that forked the workers


def _run(i: int) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return _JOBS[i][1](), time.perf_counter() - t0


def default_workers() -> int:
    """Processes drawing figures: the usable cores (at most 4), or 1 where forking is unsafe (torch loaded: its
    thread pools do not survive a fork) or unavailable."""
    if "torch" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _worker_init() -> None:
    """A figure worker dies with the report: it leaves SIGINT to the report (which then terminates the pool), takes
    SIGTERM's default action, and on Linux asks the kernel to SIGKILL it when the report's process dies in any
    way (PR_SET_PDEATHSIG), killed with SIGKILL included."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if _PARENT and os.getppid() != _PARENT[0]:  # the report died before the line above
        os._exit(1)


class _Terminated(BaseException):
    """SIGTERM arrived while the workers ran."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the workers draw, SIGTERM raises in the main thread, so the pool is torn down (its workers killed)
    before the process ends by SIGTERM as it would have (the previous handler, default: exit 143)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: Any) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(signal.SIGTERM)
        raise SystemExit(128 + signal.SIGTERM) from None  # a previous handler that returned
    finally:
        signal.signal(signal.SIGTERM, previous)


def _in_workers(count: int, workers: int) -> list[tuple[Any, float]]:
    """`_run` of every job in `workers` forked processes, which never outlive this call: an exception, Ctrl-C or
    SIGTERM here terminates them (`multiprocessing.Pool.__exit__`), and they die with this process."""
    _PARENT[:] = [os.getpid()]
    pool = multiprocessing.get_context("fork").Pool(min(workers, count), initializer=_worker_init)
    with _sigterm_raises(), pool:  # on SIGTERM the pool is terminated first, then the process ends
        return pool.map(_run, range(count), chunksize=1)


def run_jobs(
    jobs: dict[str, Callable[[], Any]], timings: dict[str, float] | None, workers: int | None = None
) -> dict[str, Any]:
    """Run the jobs (figures, fits), in `workers` forked processes when more than one (the jobs and their data are
    inherited, not pickled; only results come back); `timings` gets each kind's summed time (`draw:<kind>`)."""
    global _JOBS
    workers = default_workers() if workers is None else workers
    _JOBS = list(jobs.items())
    try:
        if workers > 1 and len(_JOBS) > 2:
            done = _in_workers(len(_JOBS), workers)
        else:
            done = [_run(i) for i in range(len(_JOBS))]
    finally:
        _JOBS = []
    if timings is not None:
        for (name, _), (_, seconds) in zip(jobs.items(), done):
            kind = name.split("_")[0] if name.startswith(("heatmap", "trend")) else name
            timings[f"draw:{kind}"] = timings.get(f"draw:{kind}", 0.0) + seconds
    return {name: out for (name, _), (out, _) in zip(jobs.items(), done)}


@contextmanager
def _timed(timings: dict[str, float] | None, name: str):
    t0 = time.perf_counter()
    yield
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class Analyses:
    """What the report computes from the table of the compared cells (`compared`: every cell, or without the cells
    that never reached `trainer.stop_at`, `excluded`): trends, τ tables, flat-vs-path τ, the paired comparison."""

    compared: pd.DataFrame
    excluded: list[str]
    measures: dict[str, str]
    trends: pd.DataFrame
    taus: dict[str, pd.DataFrame]
    tau: pd.DataFrame
    micro: dict[str, str]
    flat_tau: pd.DataFrame
    paired: pd.DataFrame


def analyse(
    results: list[CellResult], table: pd.DataFrame, methods: list[str], opts: fc.Options, timings, workers
) -> Analyses:
    """Trends, τ and the paired comparison over the compared cells (`report.unreached`)."""
    excluded = unreached_jobs(results) if opts.unreached == "exclude" else []
    compared = table[~table["job"].astype(str).isin(excluded)]
    measures = trend_measures(compared, methods)
    with _timed(timings, "trends"):
        tr = trends(compared, measures, workers)
    with _timed(timings, "tau"):
        taus = {t: correlation_table(compared, target=t) for t in TARGETS if t in compared}
        tau = pd.concat([d.assign(target=t) for t, d in taus.items()], ignore_index=True) if taus else pd.DataFrame()
        micro = micro_measures(compared, methods)
        flat_tau = flat_vs_path_tau(compared, micro)
    with _timed(timings, "paired"):
        paired = paired_table(results, compared, methods)
    return Analyses(compared, excluded, measures, tr, taus, tau, micro, flat_tau, paired)


def write_csvs(root: Path, table: pd.DataFrame, a: Analyses) -> dict[str, Path]:
    """sweep_results.csv (with each cell's group trend), kendall_tau.csv and, when not empty, trends.csv,
    flat_vs_path_tau.csv and paired_optimizer.csv; {name: path}."""
    paths: dict[str, Path] = {"table": root / TABLE_NAME, "correlations": root / TAU_NAME}
    atomic_write_text(paths["table"], with_trends(table, a.trends, a.excluded).to_csv(index=False))
    atomic_write_text(paths["correlations"], a.tau.to_csv(index=False))
    for name, file, frame in (("trends", TRENDS_NAME, a.trends), ("flat_vs_path_tau", FLAT_TAU_NAME, a.flat_tau),
                              ("paired_optimizer", PAIRED_NAME, a.paired)):  # fmt: skip
        if not frame.empty:
            paths[name] = root / file
            atomic_write_text(paths[name], frame.to_csv(index=False))
        else:  # an earlier report's file would describe other cells
            (root / file).unlink(missing_ok=True)
    return paths


def requested_columns(table: pd.DataFrame, results: list[CellResult], keys: Sequence[str]) -> pd.DataFrame:
    """The table with a `cfg:<key>` column for each `report.facet`/`report.select` key that is a config key of the
    cells but no column yet (the same in every completed cell: the table holds only varied keys), so facetting or
    selecting by it works (one panel; all or no cells) instead of failing; analysis settings and endpoint seeds
    (`NOT_HYPERPARAMETERS`) are never columns."""
    flats = [flat_config(r.config) for r in results]  # as the table builds its `cfg:` columns (lists as strings)
    for key in keys:
        excluded = any(key == x or key.startswith(f"{x}.") for x in NOT_HYPERPARAMETERS)
        if excluded or key in table or f"cfg:{key}" in table:
            continue
        if any(key in f for f in flats):
            table = table.assign(**{f"cfg:{key}": [f.get(key) for f in flats]})
    return table


def draw_figures(
    results: list[CellResult], table: pd.DataFrame, a: Analyses, methods: list[str], opts: fc.Options,
    figdir: Path, timings: dict[str, float] | None, workers: int | None,
) -> tuple[dict[str, Drawn], list[str]]:  # fmt: skip
    """Every figure ({name: Drawn}, the drawn ones) and the notes on those not drawn."""
    view = fc.View.of(table, opts)
    compared = fc.View.of(a.compared, opts) if a.excluded else view
    t_figures = time.perf_counter()
    inputs = FigureInputs(results, view, compared, methods, a.trends, a.measures, a.micro, figdir)
    jobs, order = figure_jobs(inputs)
    drawn_all = run_jobs({n: jobs[n] for n in order}, timings, workers)
    figures = {name: drawn_all[name] for name in jobs if drawn_all[name] is not None}
    if timings is not None:
        timings["figures (wall)"] = time.perf_counter() - t_figures
    notes = []
    if not methods:
        notes.append("No cell has connectivity results (fewer than 2 endpoints?): no barrier heatmaps or curves.")
    notes += [f"`{n}` skipped: no completed cell has a value for it." for n in jobs if n.startswith("heatmap_")
              and n not in figures]  # fmt: skip
    return figures, notes


def write_markdown(
    out: Path, root: Path, results: list[CellResult], table: pd.DataFrame, a: Analyses, figures: dict[str, Drawn],
    notes: list[str], opts: fc.Options,
) -> set[Path]:  # fmt: skip
    """`report.md` in `out` (of the sweep `root`) and the index pages of large figure sets; returns those pages."""
    warnings = quality_warnings(results, unreached_included=opts.unreached == "include")
    warnings += [line for line in [train_loss_spread(a.compared)] if line]
    targets = {t: name for t, name in TARGETS.items() if t in a.taus}
    text = render_report(out, table, a.tau, figures, notes, warnings, a.trends, a.flat_tau, opts, targets,
                         a.paired, unreached_details(results), source=root)  # fmt: skip
    atomic_write_text(out / REPORT_NAME, text)
    pages = set()
    for name, drawn in figures.items():
        if len(drawn.paths) > INLINE_MAX:
            pages.add(out / FIGURES_DIR / f"{name}.md")
            atomic_write_text(out / FIGURES_DIR / f"{name}.md", figure_index(out, name, drawn))
    return pages


def build_report(
    sweep_dir: str | Path,
    wandb: bool = False,
    options: fc.Options | dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    workers: int | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, str]:
    """Write every report artefact of a sweep; returns {name: path} (plus `wandb_run` when logged). `options`:
    `report.facet`/`report.select`/`report.unreached` (a `facets.Options` or the `report` config node); `timings`
    is filled with the seconds each step took (figures: summed drawing time per kind); `workers`: processes
    drawing the figures (default: `default_workers`); `out_dir`: where the report goes (default: the sweep dir,
    which is then only read, apart from its results cache)."""
    root = Path(sweep_dir)
    out = root if out_dir is None else Path(out_dir)
    opts = options if isinstance(options, fc.Options) else fc.Options.from_config(options)
    with _timed(timings, "read"):
        results = load_results(root)
    with _timed(timings, "table"):
        table = requested_columns(sweep_table(results), results, [*opts.facet, *opts.select])
        for key in [*opts.facet, *opts.select]:
            fc.column(table, key, "report.facet" if key in opts.facet else "report.select")
        methods = methods_of(results)
    a = analyse(results, table, methods, opts, timings, workers)
    paths = write_csvs(out, table, a)
    figdir = out / FIGURES_DIR
    figures, notes = draw_figures(results, table, a, methods, opts, figdir, timings, workers)

    paths["report"] = out / REPORT_NAME
    with _timed(timings, "markdown"):
        pages = write_markdown(out, root, results, table, a, figures, notes, opts)
    remove_stale_figures(figdir, pages | {p for drawn in figures.values() for p in drawn.paths})
    flat = {}
    for name, drawn in figures.items():
        if len(drawn.paths) == 1:
            flat[name] = drawn.paths[0]
        else:
            flat.update({f"{name}_p{k}": p for k, p in enumerate(drawn.paths, 1)})
    paths.update(flat)
    if wandb:
        from landscape_sweep.report.wandb_log import log_report  # optional: only a report logged to W&B

        with _timed(timings, "wandb"):
            paths["wandb_run"] = log_report(root, results, table, a.tau, flat, out_dir=out)
    return {k: str(v) for k, v in paths.items()}

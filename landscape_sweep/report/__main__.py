"""`python -m landscape_sweep.report <sweep_dir> [--wandb] [--out DIR] [report.facet=KEY,...] [report.select=KEY=V1,V2
...] [report.unreached=exclude|include]`: (re)build the sweep report from results.json files.

The report goes into the sweep dir, or into `--out DIR` (the sweep dir is then only read, apart from its results
cache when it can be written). A sweep dir that cannot be written without `--out` gets nothing written: the sweep
table is printed and one line says so (exit 2).

report.facet: split every figure by these keys (cell fields or config keys, e.g. optimizer.lr) besides those the
report splits by itself (every varied hyperparameter a figure does not show); report.select: draw only the cells
whose KEY is one of the values (repeat for several keys). Tables and CSV files always hold every cell.
report.unreached: `exclude` (default) leaves cells with an endpoint that never reached trainer.stop_at out of the
trends, τ and the paired optimizer comparison (they are listed apart); `include` puts them back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from landscape_sweep.checks import fail
from landscape_sweep.files import dir_problem, write_problem
from landscape_sweep.report import build_report
from landscape_sweep.report.facets import Options
from landscape_sweep.report.table import TABLE_NAME, load_results, sweep_table
from landscape_sweep.results import job_dirs

PRINTED = [
    "job",
    "status",
    "arch",
    "depth",
    "width",
    "optimizer",
    "num_params",
    "test_acc_mean",
    "gen_gap_mean",
    "linear/loss_barrier_mean",
    "linear_aligned/loss_barrier_mean",
    "hessian_top_eig_mean",
]


def problem_lines(table: pd.DataFrame) -> list[str]:
    """`<job>: <status>: <error or reason> (overrides: …)` for every job that did not complete."""
    lines = []
    for _, r in table[table["status"] != "completed"].iterrows():
        over = r.get("overrides")
        over = f" (overrides: {over})" if isinstance(over, str) and over else ""
        lines.append(f"{r['job']}: {r['status']}: {r['error'] if isinstance(r['error'], str) else '—'}{over}")
    return lines


def parse_options(items: list[str]) -> Options:
    """`report.facet=a,b`, `report.select=key=v1,v2` and `report.unreached=include` command-line items as report
    options."""
    facet: list[str] = []
    select: dict[str, list[str]] = {}
    unreached = None
    for item in items:
        name, _, value = item.partition("=")
        if name == "report.facet" and value:
            facet += [k for k in value.split(",") if k]
        elif name == "report.select" and "=" in value:
            key, _, values = value.partition("=")
            select.setdefault(key, []).extend(v for v in values.split(",") if v)
        elif name == "report.unreached" and value:
            unreached = value
        else:
            fail("option", item, "must be report.facet=KEY[,KEY], report.select=KEY=VALUE[,VALUE] or "
                 "report.unreached=exclude|include")  # fmt: skip
    return Options.from_config({"facet": facet, "select": select, "unreached": unreached})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_sweep.report", description=__doc__)
    ap.add_argument("sweep_dir", help="a Hydra multirun directory (or a single run directory)")
    ap.add_argument("--wandb", action="store_true", help="also log the report as one W&B run (job_type=report)")
    ap.add_argument("--out", help="write the report into this directory instead of the sweep dir (which is then "
                    "only read), e.g. for a read-only sweep")  # fmt: skip
    ap.add_argument(
        "options", nargs="*", help="report.facet=KEY[,KEY], report.select=KEY=VALUE[,VALUE], report.unreached=include"
    )
    args = ap.parse_intermixed_args(argv)  # options may follow --out DIR
    try:
        options = parse_options(args.options)
    except ValueError as e:
        print(f"landscape_sweep.report: {e}", file=sys.stderr)
        return 2
    sweep = Path(args.sweep_dir)
    error = _sweep_error(sweep)
    if error is not None:
        print(f"landscape_sweep.report: sweep_dir={str(sweep)!r}: {error}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else sweep
    unwritable = write_problem(out)
    if unwritable is not None:
        return _not_written(sweep, args.out, unwritable)
    try:
        paths = build_report(sweep, wandb=args.wandb, options=options, out_dir=out)
    except ValueError as e:  # a report.facet/select key this sweep does not have
        print(f"landscape_sweep.report: {e}", file=sys.stderr)
        return 2
    _print_table(pd.read_csv(out / TABLE_NAME))
    for name, p in paths.items():
        print(f"{name}: {p}")
    if args.out:
        print(f"report written to {out} (the sweep dir {sweep} was only read)")
    return 0


def _sweep_error(sweep: Path) -> str | None:
    """Why `sweep` is no sweep to report on (not a directory, a name too long, no job dirs), or None."""
    problem = dir_problem(sweep)
    if problem is not None:
        return problem if problem == "not a directory" else f"not a readable directory ({problem})"
    return None if job_dirs(sweep) else "no job directories (no results.json or .hydra/)"


def _print_table(table: pd.DataFrame) -> None:
    """The sweep table's main columns, then one line per cell that did not complete."""
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table[[c for c in PRINTED if c in table]].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    for line in problem_lines(table):
        print(line)


def _not_written(sweep: Path, out: str | None, why: str) -> int:
    """A report that cannot be written where asked: nothing is written; without --out (a read-only sweep dir) the
    sweep table is still printed. One line on stderr says which, exit 2."""
    if out is not None:
        print(f"landscape_sweep.report: --out={out!r}: cannot be written ({why}); nothing written", file=sys.stderr)
        return 2
    _print_table(sweep_table(load_results(sweep)))
    print(
        f"landscape_sweep.report: sweep_dir={str(sweep)!r} cannot be written ({why}): nothing written (the table "
        "above is only printed); write the report elsewhere with --out DIR",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())

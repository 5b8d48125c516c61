"""`python -m landscape_sweep.report <sweep_dir>`: (re)build the sweep report from results.json files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landscape_sweep.report import build_report, load_results, sweep_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_sweep.report", description=__doc__)
    ap.add_argument("sweep_dir", help="a Hydra multirun directory (or a single run directory)")
    args = ap.parse_args(argv)
    sweep = Path(args.sweep_dir)
    if not sweep.is_dir():
        print(f"landscape_sweep.report: sweep_dir={str(sweep)!r}: not a directory", file=sys.stderr)
        return 2
    if not load_results(sweep):
        print(
            f"landscape_sweep.report: sweep_dir={str(sweep)!r}: no job directories (no results.json or .hydra/)",
            file=sys.stderr,
        )
        return 2
    paths = build_report(str(sweep))
    cols = [
        "job",
        "status",
        "arch",
        "depth",
        "width",
        "optimizer",
        "num_params",
        "train_acc_mean",
        "test_acc_mean",
        "gen_gap_mean",
    ]
    table = sweep_table(load_results(sweep))
    print(table[[c for c in cols if c in table]].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    for name, p in paths.items():
        print(f"{name}: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m landscape_sweep.analyze <job_dir|sweep_dir> [landscape overrides]`: re-analyse trained cells.

Loads each completed cell's saved endpoints and rewrites the analysis parts of its results.json with the
given landscape settings (e.g. `landscape=thorough`); a sweep's report is rebuilt afterwards.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_sweep.analyze", description=__doc__)
    ap.add_argument("path", help="a job directory (holding results.json) or a sweep directory")
    ap.add_argument("overrides", nargs="*", help="landscape overrides, e.g. landscape=thorough")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")

    from landscape_sweep.pipeline.config import ConfigError
    from landscape_sweep.pipeline.reanalyze import cell_dirs, landscape_config, reanalyze_cell

    path = Path(args.path)
    cells = cell_dirs(path) if path.is_dir() else []
    if not cells:
        print(f"landscape_sweep.analyze: path={str(path)!r}: no results.json found there", file=sys.stderr)
        return 2
    try:
        landscape = landscape_config(args.overrides)
    except ConfigError as e:
        print(f"landscape_sweep.analyze: config error: {e}", file=sys.stderr)
        return 2
    failures = 0
    for job in cells:
        try:
            r = reanalyze_cell(job, landscape)
            print(f"{job}: re-analysed ({len(r['connectivity'])} paths)")
        except Exception as e:  # one bad cell must not stop the others
            failures += 1
            print(f"{job}: {' '.join(str(e).split())}", file=sys.stderr)
    if len(cells) > 1 or cells[0] != path:
        from landscape_sweep.report import build_report

        build_report(str(path))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

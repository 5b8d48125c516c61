"""Two sweeps started together on one machine: does each size its threads to its share of the cores?

Runs the same small sweep (4 mnist1d MLP cells, `landscape=fast`, no logger) alone and then twice at once, each
time with `trainer.threads=auto` (the default: the live cell processes share the cores) and with every process
taking all the machine's cores (`trainer.threads=<cores>`, torch's own default, which oversubscribes them when two
run). Prints each wall time and the slowdown of the concurrent pair over one sweep alone (ideal on a machine
whose cores one sweep already fills: 2.0).

    python benchmarks/concurrent_sweeps.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = ["-m", "model.depth=1,2", "model.width=64,256", "logger=none", "landscape=fast", "trainer.max_epochs=20",
        "trainer.enable_progress_bar=false"]  # fmt: skip


def sweep(root: Path, name: str, threads: str) -> subprocess.Popen:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    args = [*GRID, f"trainer.threads={threads}", f"hydra.sweep.dir={root / name}", f"paths.data_dir={root / 'data'}"]
    return subprocess.Popen([sys.executable, "-m", "landscape_sweep", *args], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def timed(root: Path, threads: str, together: int) -> float:
    t0 = time.perf_counter()
    procs = [sweep(root, f"{threads}-{together}-{i}-{time.time_ns()}", threads) for i in range(together)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a sweep failed (exit {p.returncode})")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="landscape_sweep_concurrent-"))
    cores = str(len(os.sched_getaffinity(0)))
    timed(root, "auto", 1)  # data generated, caches warm
    print(f"{'threads':<18}{'one sweep s':>12}{'two at once s':>15}{'slowdown':>10}")
    for threads in ("auto", cores):
        alone = statistics.median(timed(root, threads, 1) for _ in range(args.repeats))
        pair = statistics.median(timed(root, threads, 2) for _ in range(args.repeats))
        label = "auto" if threads == "auto" else f"{cores} (all cores)"
        print(f"{label:<18}{alone:>12.1f}{pair:>15.1f}{pair / alone:>10.2f}")


if __name__ == "__main__":
    main()

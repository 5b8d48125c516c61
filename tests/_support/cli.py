"""Running the real CLI: the repo root, fast overrides, its environment, the CLI in this process, and checks of
what a cell wrote."""

from __future__ import annotations

import importlib
import io
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# a few seconds per cell on 2 CPU cores
FAST = [
    "trainer.max_epochs=2",
    "data.train_size=512",
    "model.width=16",
    "endpoints.seeds=[0,1]",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "landscape=fast",
]

# FAST with the analysis cut to a fraction of a second: one linear path of 5 points, tiny sharpness budgets; for
# the tests about running, resuming, skipping and files, not about the measures
QUICK = [
    *FAST,
    "landscape.connectivity.methods=[linear]",
    "landscape.connectivity.sharpness_points=[]",
    "landscape.connectivity.num_points=5",
    "landscape.analysis_size=128",
    "landscape.sharpness.kinds=[average]",
    "landscape.sharpness.num_samples=2",
    "landscape.sharpness.trace_probes=2",
    "landscape.sharpness.max_iter=5",
]

CONTRACT = {
    "schema",
    "status",
    "error",
    "config_hash",
    "config",
    "cell",
    "endpoints",
    "connectivity",
    "timing_s",
    "versions",
}
CELL = {"dataset", "arch", "depth", "width", "optimizer", "num_params", "train_size"}
ENDPOINT = {"seed", "checkpoint", "train_loss", "train_acc", "test_loss", "test_acc", "sharpness", "trajectory"}


def cli_env(root: Path) -> dict[str, str]:
    """The environment of a CLI run with outputs under `root`: offline W&B, short errors, no SLURM job, and this
    checkout's package first on the path (a subprocess runs from another cwd; a SLURM job inherits it)."""
    env = dict(os.environ)
    env.update(
        LANDSCAPE_SWEEP_ROOT=str(root),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        HYDRA_FULL_ERROR="0",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    )
    env.pop("SLURM_JOB_ID", None)
    return env


# `python -m <module>` -> the module holding its `main(argv)`
ENTRY = {"landscape_sweep": "landscape_sweep.pipeline.app", "landscape_sweep.report": "landscape_sweep.report.__main__"}
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


@contextmanager
def process_state(env: dict[str, str], cwd: Path, argv: list[str]) -> Iterator[None]:
    """Give this process what a CLI process has of its own (environment, cwd, argv, the CLI's lists of its cells'
    statuses and refused cells) and restore afterwards what a run changes for the process: logging (Hydra
    configures the root logger per job), warning filters, torch's threads (`trainer.threads`), the RNGs, signal
    handlers; W&B is torn down, as at a process's exit (its service writes a run's files out after `finish()`
    returns). In a thread (a sweep the test acts on while it runs) the environment, cwd and output are the whole
    process's meanwhile."""
    import numpy as np
    import torch

    from landscape_sweep.pipeline import app

    manager = logging.Logger.manager
    loggers = [logging.getLogger(), *(x for x in manager.loggerDict.values() if isinstance(x, logging.Logger))]
    saved_logging = {x: (x.level, list(x.handlers), x.propagate, x.disabled) for x in loggers}
    disabled, environ, old_cwd, old_argv = manager.disable, dict(os.environ), os.getcwd(), sys.argv
    threads, rng = torch.get_num_threads(), (torch.get_rng_state(), random.getstate(), np.random.get_state())
    main_thread = threading.current_thread() is threading.main_thread()  # elsewhere no handler can change
    handlers = {s: signal.getsignal(s) for s in SIGNALS} if main_thread else {}
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = argv
    app._last_status.clear()  # the process-wide state of one CLI run: its cells' statuses, the cells it refused
    app._refused.clear()
    try:
        with warnings.catch_warnings():
            yield
    finally:
        if "wandb" in sys.modules:  # as at a process's exit: W&B's service writes out the runs' files and ends
            sys.modules["wandb"].teardown()
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(environ)
        sys.argv = old_argv
        for logger in [logging.getLogger(), *(x for x in manager.loggerDict.values() if isinstance(x, logging.Logger))]:
            level, kept, propagate, off = saved_logging.get(logger, (logging.NOTSET, [], True, False))
            for h in logger.handlers:
                if h not in kept:
                    h.close()
            logger.handlers[:] = kept
            logger.level, logger.propagate, logger.disabled = level, propagate, off
        manager.disable = disabled
        manager._clear_cache()
        torch.set_num_threads(threads)
        torch.set_rng_state(rng[0])
        random.setstate(rng[1])
        np.random.set_state(rng[2])
        for s, h in handlers.items():
            signal.signal(s, h)


def run_in_process(
    args: list[str],
    root: Path,
    *,
    module: str = "landscape_sweep",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """`python -m <module> args` run by its `main(argv)` in this process, from `cwd` (default `root`) with the
    CLI's environment (`cli_env(root)`): the same code from the command line on, its exit code and its output,
    without a new interpreter's imports (~8 s of CPU). For what a process boundary changes (signals, exit of the
    process, worker processes, SLURM) the tests run a real subprocess."""
    main = importlib.import_module(ENTRY.get(module, module)).main
    out, err = io.StringIO(), io.StringIO()
    with process_state(env or cli_env(root), cwd or root, [module, *args]), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args)) or 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def only(paths) -> Path:
    """The single path in `paths` (asserts there is exactly one)."""
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


def check_completed(job_dir: Path) -> dict:
    """The job's results.json, asserted completed and holding the results contract with finite metrics."""
    results = json.loads((job_dir / "results.json").read_text())
    assert results["status"] == "completed", results.get("error")
    assert set(results) >= CONTRACT and set(results["cell"]) >= CELL and results["error"] is None
    for endpoint in results["endpoints"]:
        assert set(endpoint) >= ENDPOINT
        assert all(math.isfinite(endpoint[k]) for k in ("train_loss", "train_acc", "test_loss", "test_acc"))
        assert (job_dir / endpoint["checkpoint"]).is_file()
    return results

"""Every use of a private Hydra / hydra-submitit-launcher / submitit API by the launchers, one small function each.

These were checked against the versions in `CHECKED`; `version_mismatches()` says which wrappers to re-check when
an installed version differs (tests/hydra_plugins/test_launcher.py fails on it, `launch` logs it). Nothing else in
this package reaches into those libraries' internals. The module's name starts with `_`, so Hydra's plugin scan
does not import (and re-execute) it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from omegaconf import DictConfig

from hydra_plugins.landscape_sweep_launchers._schema import OWN_KEYS  # noqa: F401 (also read by the tests)

# the installed versions the wrappers below were read against
CHECKED = {"hydra-core": "1.3.8", "hydra-submitit-launcher": "1.2.0", "submitit": "1.5.4"}
# what to re-read in each package when its version changes: `wrapper: the private API it relies on`
PRIVATE_APIS = {
    "hydra-core": (
        "hydra_state: hydra.core.singleton.Singleton.get_state() (Hydra's globals, restored by the job)",
        "job_error: the JobReturn._return_value field (a failed job's exception, read without raising)",
        "run_multirun_end: HydraContext.callbacks.on_multirun_end(config=...) (hydra._internal.callbacks), and "
        "BasicSweeper.sweep raising a failed job's error before Hydra runs on_multirun_end",
    ),
    "hydra-submitit-launcher": (
        "job_args: BaseSubmititLauncher.__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)",
        "make_executor: BaseSubmititLauncher.launch's executor set-up (its `params`, `_EXECUTOR`, BaseQueueConf keys)",
    ),
    "submitit": (
        "make_executor: AutoExecutor(cluster=..., <cluster>_max_num_timeout=...) and the `<cluster>_` prefix of "
        "update_parameters keys",
        "quiet_sacct_errors: the `submitit` logger and its per-poll warning 'Call #N - Bypassing sacct error ...' "
        "(InfoWatcher.update)",
    ),
}
HERE = "hydra_plugins/landscape_sweep_launchers/_private.py"


def version_mismatches() -> list[str]:
    """One line per package whose installed version is not the checked one, naming the wrappers to re-check."""
    lines = []
    for package, checked in CHECKED.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != checked:
            apis = "; ".join(PRIVATE_APIS[package])
            lines.append(
                f"{package} is {installed}, the private-API wrappers in {HERE} were checked against {checked}: "
                f"re-check {apis}; then update CHECKED"
            )
    return lines


def hydra_state() -> Any:
    """Hydra's global state (config store, job runtime, resolvers) for the job process to restore."""
    return Singleton.get_state()


def job_args(overrides: Sequence[str], num: int, state: Any) -> tuple[Any, ...]:
    """The positional arguments of the plugin's job-side `BaseSubmititLauncher.__call__` for one cell."""
    return (list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", state)


def make_executor(launcher: Any) -> Any:
    """A submitit AutoExecutor configured from the plugin launcher's parameters, exactly as its `launch` does.

    `max_num_timeout` is a constructor argument; the keys of `BaseQueueConf` are shared by every executor, all
    others take the executor's prefix (`slurm_partition`, ...); our own keys (`OWN_KEYS`) are left out.
    """
    # deferred: submitit and its Hydra plugin's config, when a sweep is submitted only (not at the plugin scan)
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    kind, params = launcher._EXECUTOR, launcher.params
    init = {"folder": params["submitit_folder"]}
    if "max_num_timeout" in params:
        init[f"{kind}_max_num_timeout"] = params["max_num_timeout"]
    executor = submitit.AutoExecutor(cluster=kind, **init)
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    rest = {k: v for k, v in params.items() if k not in ("submitit_folder", "max_num_timeout", *OWN_KEYS)}
    executor.update_parameters(**{(k if k in shared else f"{kind}_{k}"): v for k, v in rest.items()})
    return executor


def job_error(ret: JobReturn) -> Any:
    """A failed job's exception, without raising it (the public `return_value` raises and writes to stderr)."""
    return ret._return_value


def run_multirun_end(hydra_context: Any, config: DictConfig) -> None:
    """Run the multirun-end callbacks (the sweep report) now: Hydra skips them once a job has failed."""
    hydra_context.callbacks.on_multirun_end(config=config)


class _FirstSacctError(logging.Filter):
    """Drops submitit's sacct errors and logs the first one through our logger.

    Passed on, each record would print three times: submitit's stdout and stderr handlers, then Hydra's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in str(record.msg):
            return True
        self.seen += 1
        if self.seen == 1:
            logging.getLogger(__package__ or __name__).warning(
                "%s (further sacct errors are not logged)", record.getMessage()
            )
        return False


@contextmanager
def quiet_sacct_errors() -> Iterator[None]:
    """While waiting on jobs, submitit warns on every failed sacct poll: log the first warning only, once."""
    logger, only_first = logging.getLogger("submitit"), _FirstSacctError()
    logger.addFilter(only_first)
    try:
        yield
    finally:
        logger.removeFilter(only_first)

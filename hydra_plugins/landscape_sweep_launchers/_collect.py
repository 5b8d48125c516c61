"""Collect every cell of a submitit sweep, build the report, then fail naming the cells that died.

The launcher classes themselves are in `__init__.py` (Hydra registers a launcher under the module that defines
it); this module, like `_private.py`, is skipped by Hydra's plugin scan, so its classes keep one identity.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import DictConfig

from hydra_plugins.landscape_sweep_launchers import _pending, _private

log = logging.getLogger(__name__)


class CellJobError(RuntimeError):
    """A cell's job ended without a result (killed, failed outside the cell, or lost by the scheduler)."""


def cell_name(num: int, overrides: Sequence[str], job_id: str) -> str:
    """`cell #<num> (<overrides>) SLURM job <id>`: how errors name a cell."""
    shown = " ".join(filter_overrides(list(overrides))) or "no overrides"
    return f"cell #{num} ({shown}) SLURM job {job_id}"


def _summary(text: object, limit: int = 400) -> str:
    """An error message on one line: submitit's text before its dumped error stream, whitespace collapsed."""
    msg = " ".join(str(text).split("Error stream produced:")[0].split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _cell_error(msg: str, cause: Any = None) -> CellJobError:
    err = CellJobError(msg)
    err.__cause__ = cause if isinstance(cause, BaseException) else None
    return err


def collect(job: Any, num: int, overrides: Sequence[str]) -> JobReturn:
    """The `JobReturn` of one submitit job; a job without one becomes a failed `JobReturn` naming the cell."""
    name = cell_name(num, overrides, job.job_id)
    try:
        ret = job.results()[0]
    except Exception as e:  # UncompletedJobError (no output), FailedJobError (raised outside Hydra's run_job)
        try:
            state = job.state  # asks the scheduler (sacct)
        except Exception:
            state = "UNKNOWN"
        logs = getattr(getattr(job, "paths", None), "stderr", None)
        msg = f"{name} ended without a result (state {state}): {_summary(e)}"
        ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        ret.return_value = _cell_error(msg + (f"; log: {logs}" if logs is not None else ""))
        return ret
    if ret.status == JobStatus.FAILED:  # the task function raised (the cell itself records its own errors)
        err = _private.job_error(ret)
        ret.return_value = _cell_error(f"{name} failed: {type(err).__name__}: {_summary(err)}", err)
    return ret


def _open_sweep_dir(config: DictConfig) -> Path:
    """Create the sweep directory (with `hydra.sweep.mode` when set), as the plugin does."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(config.hydra.sweep.mode), 8))
    return sweep_dir


class CollectAll:
    """Mixin over the plugin's launchers: submit the array, collect every job, report, then fail if any failed.

    A SLURM array is watched while it waits (`_pending`): one that can never start, or pends past
    `pending_timeout_min`, is cancelled and fails the command in one line (`PendingError`), as does one that sbatch
    rejects. The plugin's own job side (`__call__`: restore Hydra's state, run the cell; `checkpoint`: requeue) is
    kept.
    """

    _sweep_config: DictConfig | None = None
    _hydra_context: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        """Hydra's launcher interface; keeps the context and config for `launch`."""
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)  # type: ignore[misc]
        self._sweep_config, self._hydra_context = config, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run one batch of cells as a submitit array; every cell gets a `JobReturn`, dead ones a failed one."""
        config = self._sweep_config
        assert config is not None and len(job_overrides) > 0, "setup() must run first, with at least one job"
        for line in _private.version_mismatches():
            log.warning("%s", line)
        executor = _private.make_executor(self)
        log.info("Submitit '%s' sweep output dir : %s", executor.cluster, _open_sweep_dir(config))
        nums = [initial_job_idx + i for i in range(len(job_overrides))]
        for num, ov in zip(nums, job_overrides):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(list(ov))))
        jobs = self._submit(executor, nums, job_overrides)
        with _private.quiet_sacct_errors():
            try:
                self._wait(executor, jobs)
            except _pending.PendingError:
                self._report_cancelled(jobs)
                raise
            returns = [collect(job, num, ov) for job, num, ov in zip(jobs, nums, job_overrides)]
        failed = [r for r in returns if r.status == JobStatus.FAILED]
        if failed:
            for r in failed:
                log.error("%s", _private.job_error(r))
            log.error("%d of %d cells failed; building the sweep report from the others", len(failed), len(returns))
            _private.run_multirun_end(self._hydra_context, config)
        return returns

    def _submit(self, executor: Any, nums: Sequence[int], job_overrides: Sequence[Sequence[str]]) -> list[Any]:
        """Submit the cells as one array; a request the scheduler rejects fails in one line naming the request."""
        from submitit.core.utils import FailedJobError

        state = _private.hydra_state()
        args = [_private.job_args(ov, n, state) for n, ov in zip(nums, job_overrides)]
        try:
            jobs = executor.map_array(self, *zip(*args))
        except FailedJobError as e:
            why = "; ".join(ln.strip().removeprefix("sbatch: error: ") for ln in str(e).splitlines() if ln.strip())
            request = _pending.request_text(self._params())
            raise _pending.PendingError(f"{request}: {executor.cluster} rejected the array: {_summary(why)}") from e
        log.info("submitted %d jobs: %s", len(jobs), ", ".join(j.job_id for j in jobs))
        return jobs

    def _params(self) -> dict[str, Any]:
        """The launcher's parameters (the plugin's `params`: the preset's keys)."""
        return dict(getattr(self, "params", {}))

    def _wait(self, executor: Any, jobs: Sequence[Any]) -> None:
        """Wait for every job; SLURM arrays are watched for requests that cannot start (see `_pending`)."""
        if executor.cluster != "slurm":
            for job in jobs:
                job.wait()
            return
        params = self._params()
        _pending.wait(jobs, _pending.PendingWatch(params, params.get("pending_timeout_min")))

    def _report_cancelled(self, jobs: Sequence[Any]) -> None:
        """After cancelling: report the cells that finished before (if any); the others show as missing."""
        if any(job.paths.result_pickle.exists() for job in jobs):
            _private.run_multirun_end(self._hydra_context, self._sweep_config)

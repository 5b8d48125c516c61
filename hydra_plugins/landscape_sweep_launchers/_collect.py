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

from hydra_plugins.landscape_sweep_launchers import _detach, _pack, _pending, _private
from landscape_sweep import manifest

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


def _no_result(job: Any, error: Exception) -> str:
    """Why a job has no result: `ended without a result (state S): <submitit's message>; log: <stderr file>`."""
    try:
        state = job.state  # asks the scheduler (sacct)
    except Exception:
        state = "UNKNOWN"
    logs = getattr(getattr(job, "paths", None), "stderr", None)
    return f"ended without a result (state {state}): {_summary(error)}" + (f"; log: {logs}" if logs is not None else "")


def _lost(name: str, why: str, overrides: Sequence[str]) -> JobReturn:
    """A failed `JobReturn` for a cell whose job produced no result for it."""
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
    ret.return_value = _cell_error(f"{name} {why}")
    return ret


def _named(ret: JobReturn, name: str) -> JobReturn:
    """A cell's own `JobReturn`; a failed one (the task function raised) gets an error naming the cell."""
    if ret.status == JobStatus.FAILED:  # the cell itself records its own errors
        err = _private.job_error(ret)
        ret.return_value = _cell_error(f"{name} failed: {type(err).__name__}: {_summary(err)}", err)
    return ret


def collect(job: Any, num: int, overrides: Sequence[str]) -> JobReturn:
    """The `JobReturn` of one submitit job; a job without one becomes a failed `JobReturn` naming the cell."""
    name = cell_name(num, overrides, job.job_id)
    try:
        ret = job.results()[0]
    except Exception as e:  # UncompletedJobError (no output), FailedJobError (raised outside Hydra's run_job)
        return _lost(name, _no_result(job, e), overrides)
    return _named(ret, name)


def collect_packed(job: Any, nums: Sequence[int], overrides: Sequence[Sequence[str]]) -> list[JobReturn]:
    """One `JobReturn` per cell of a packed job (`cells_per_job` > 1), in order.

    A job without a result (killed, or failed outside its cells) still gives the cells it finished, from the
    returns it saved as each ended (`_pack`); each of the others becomes a failed `JobReturn` naming the cell.
    """
    names = [cell_name(num, ov, job.job_id) for num, ov in zip(nums, overrides)]
    try:
        rets = list(job.results()[0])
        if len(rets) != len(nums):
            raise RuntimeError(f"the job returned {len(rets)} results for {len(nums)} cells")
    except Exception as e:
        why, folder = _no_result(job, e), job.paths.folder
        saved = [_pack.load_return(_pack.return_path(folder, job.job_id, num)) for num in nums]
        return [
            _named(s, name) if s is not None else _lost(name, why, ov) for s, name, ov in zip(saved, names, overrides)
        ]
    return [_named(ret, name) for ret, name in zip(rets, names)]


def _open_sweep_dir(config: DictConfig) -> Path:
    """Create the sweep directory (with `hydra.sweep.mode` when set), as the plugin does."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(config.hydra.sweep.mode), 8))
    return sweep_dir


def _record(config: DictConfig, jobs: Sequence[Any], nums: Sequence[int], overrides: Sequence[Any], size: int) -> None:
    """Each cell's job id in the sweep's manifest (`sweep.json`), for `python -m landscape_sweep.status`."""
    try:
        ids = _detach.job_ids(jobs, nums, size)
        array = jobs[0].job_id.split("_")[0] if jobs else None
        manifest.record_submission(
            str(config.hydra.sweep.dir), ids, dict(zip(nums, map(list, overrides))), array=array, report_job=None
        )
    except OSError as e:  # the sweep runs on; only `status` loses the job ids
        log.warning("sweep manifest not written: %s", e)


class CollectAll:
    """Mixin over the plugin's launchers: submit the array, collect every job, report, then fail if any failed.

    A SLURM array is watched while it waits (`_pending`): one that can never start, or pends past
    `pending_timeout_min`, is cancelled and fails the command in one line (`PendingError`), as does one that sbatch
    rejects. The plugin's own job side (`__call__`: restore Hydra's state, run the cell; `checkpoint`: requeue, after
    the running training wrote its `last.ckpt`) is kept; with `cells_per_job` > 1 each job runs consecutive chunks
    of cells through it (`_pack.PackedCells`).
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
        size = _pack.cells_per_job(self._params())
        for line in _private.version_mismatches():
            log.warning("%s", line)
        executor = _private.make_executor(self)
        log.info("Submitit '%s' sweep output dir : %s", executor.cluster, _open_sweep_dir(config))
        nums = [initial_job_idx + i for i in range(len(job_overrides))]
        for num, ov in zip(nums, job_overrides):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(list(ov))))
        if self._params().get("detach"):
            return _detach.launch(self, executor, config, nums, job_overrides, size)
        jobs = self._submit(executor, nums, job_overrides, size)
        _record(config, jobs, nums, job_overrides, size)
        with _private.quiet_sacct_errors():
            try:
                self._wait(executor, jobs)
            except _pending.PendingError:
                self._report_cancelled(jobs, _pack.chunks(nums, size) if size > 1 else ())
                raise
            if size == 1:
                returns = [collect(job, num, ov) for job, num, ov in zip(jobs, nums, job_overrides)]
            else:
                groups = zip(jobs, _pack.chunks(nums, size), _pack.chunks(job_overrides, size))
                returns = [ret for job, ns, ovs in groups for ret in collect_packed(job, ns, ovs)]
        failed = [r for r in returns if r.status == JobStatus.FAILED]
        if failed:
            for r in failed:
                log.error("%s", _private.job_error(r))
            log.error("%d of %d cells failed; building the sweep report from the others", len(failed), len(returns))
            _private.run_multirun_end(self._hydra_context, config)
        return returns

    def _submit(
        self, executor: Any, nums: Sequence[int], job_overrides: Sequence[Sequence[str]], size: int = 1
    ) -> list[Any]:
        """Submit the cells as one array, one job per `size` consecutive cells; a request the scheduler rejects fails
        in one line naming the request."""
        from submitit.core.utils import FailedJobError

        state = _private.hydra_state()
        args = [_private.job_args(ov, n, state) for n, ov in zip(nums, job_overrides)]
        try:
            if size == 1:
                jobs = executor.map_array(self, *zip(*args))
            else:
                jobs = executor.map_array(_pack.PackedCells(self), _pack.chunks(args, size))
        except FailedJobError as e:
            why = "; ".join(ln.strip().removeprefix("sbatch: error: ") for ln in str(e).splitlines() if ln.strip())
            request = _pending.request_text(self._params())
            raise _pending.PendingError(f"{request}: {executor.cluster} rejected the array: {_summary(why)}") from e
        if size == 1:
            log.info("submitted %d jobs: %s", len(jobs), ", ".join(j.job_id for j in jobs))
        else:
            cells = [f"#{ns[0]}" + (f"-{ns[-1]}" if len(ns) > 1 else "") for ns in _pack.chunks(nums, size)]
            shown = [f"{j.job_id} ({c})" for j, c in zip(jobs, cells)]
            log.info("submitted %d jobs of up to %d cells: %s", len(jobs), size, ", ".join(shown))
        return jobs

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's requeue of a one-cell job (the plugin's), after the running training wrote its `last.ckpt`."""
        _pack.before_requeue()
        return super().checkpoint(*args, **kwargs)  # type: ignore[misc]

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

    def _report_cancelled(self, jobs: Sequence[Any], packed: Sequence[Sequence[int]] = ()) -> None:
        """After cancelling: report the cells that finished before (if any); the others show as missing.

        `packed`: the cells of each job when jobs run several (their finished cells saved their returns)."""
        finished = any(job.paths.result_pickle.exists() for job in jobs) or any(
            _pack.return_path(job.paths.folder, job.job_id, num).exists()
            for job, nums in zip(jobs, packed)
            for num in nums
        )
        if finished:
            _private.run_multirun_end(self._hydra_context, self._sweep_config)

"""Submitit launchers that collect every cell of a sweep, even when some jobs die.

hydra-submitit-launcher waits for the jobs in order and raises at the first one that produced no result (a
process killed by SIGKILL or the OOM killer, a node failure), so the other cells are never collected and the
multirun-end report is never written. `CollectAll` (the `slurm` / `slurm_gpu` presets' launcher) instead turns each
such job into a failed `JobReturn` whose error names the cell (job number, overrides, SLURM job id, state,
log file), waits for all the others, builds the report through the multirun-end callbacks, and then lets
Hydra raise the first error so the command exits non-zero.

Requeueing: submitit's checkpoint/requeue (`max_num_timeout`) re-runs the whole cell; the cell resumes each
endpoint from its `last.ckpt` and reuses finished endpoints. Lightning's SLURM auto-requeue stays off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides

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


def collect(job: Any, num: int, overrides: Sequence[str]) -> JobReturn:
    """The `JobReturn` of one submitit job; a job without one becomes a failed `JobReturn` naming the cell."""
    try:
        ret = job.results()[0]
    except Exception as e:  # UncompletedJobError (no output), FailedJobError (raised outside Hydra's run_job)
        try:
            state = job.state  # asks the scheduler (sacct)
        except Exception:
            state = "UNKNOWN"
        logs = getattr(getattr(job, "paths", None), "stderr", None)
        msg = f"{cell_name(num, overrides, job.job_id)} ended without a result (state {state}): {_summary(e)}"
        if logs is not None:
            msg += f"; log: {logs}"
        return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=CellJobError(msg))
    if ret.status == JobStatus.FAILED:  # the task function raised (the cell itself records its own errors)
        err = ret._return_value
        msg = f"{cell_name(num, overrides, job.job_id)} failed: {type(err).__name__}: {_summary(err)}"
        new = CellJobError(msg)
        new.__cause__ = err if isinstance(err, BaseException) else None
        ret._return_value = new
    return ret


class CollectAll:
    """Mixin for the plugin's launchers: submit the array, collect every job, report, then fail if any failed.

    Hydra only instantiates launchers from the `hydra_plugins` namespace, so the concrete classes live in
    `hydra_plugins/landscape_sweep_launchers` (`SlurmLauncher`, `LocalLauncher`).
    """

    _EXECUTOR: str
    params: dict[str, Any]
    config: Any
    hydra_context: Any

    def _executor(self) -> Any:
        """A submitit AutoExecutor configured from this launcher's parameters (as the plugin does)."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf

        init = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                (k if k in shared else f"{self._EXECUTOR}_{k}"): v
                for k, v in self.params.items()
                if k not in ("submitit_folder", "max_num_timeout")
            }
        )
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and len(job_overrides) > 0
        executor = self._executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        nums = [initial_job_idx + i for i in range(len(job_overrides))]
        for num, ov in zip(nums, job_overrides):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(list(ov))))
        state = Singleton.get_state()
        args = [(list(ov), "hydra.sweep.dir", num, f"job_id_for_{num}", state) for num, ov in zip(nums, job_overrides)]
        jobs = executor.map_array(self, *zip(*args))
        log.info("submitted %d jobs: %s", len(jobs), ", ".join(j.job_id for j in jobs))
        returns = [collect(job, num, ov) for job, num, ov in zip(jobs, nums, job_overrides)]
        failed = [r for r in returns if r.status == JobStatus.FAILED]
        if failed:
            for r in failed:
                log.error("%s", r._return_value)
            log.error("%d of %d cells failed; building the sweep report from the others", len(failed), len(returns))
            # Hydra skips on_multirun_end when a job failed: build the report here, before it raises
            self.hydra_context.callbacks.on_multirun_end(config=self.config)
        return returns

"""Submit and walk away (`hydra.launcher.detach=true`): the array, a report job after it, a manifest, then exit.

The submitting command does not wait for the cells. It submits
- the cells that still need a job: not those whose results.json is completed for the same config (the cell would
  skip itself anyway) and not those whose earlier job the scheduler still holds (pending, running, requeued);
- one small CPU report job, `--dependency=afterany:<arrays>`, that runs `python -m landscape_sweep.report <sweep_dir>`
  (with `--wandb` when `report.wandb=true`, and `report.facet` / `report.select` / `report.unreached`) once every
  task of this submission and of earlier ones still queued has ended, whatever their state; an earlier report job
  still waiting is cancelled, so the report is written once, after the last cell;
then records job ids and submit times in `<sweep_dir>/sweep.json` (`landscape_sweep.manifest`), prints the sweep
dir, the job ids and the `status` / `resubmit` commands, and returns a completed `JobReturn` per cell, so the
command exits 0. Requeued tasks keep their job id, so the report job still waits for them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, read_write

from hydra_plugins.landscape_sweep_launchers import _pack
from landscape_sweep import manifest, scheduler
from landscape_sweep.pipeline.config import config_hash, validate
from landscape_sweep.results import read_json

log = logging.getLogger(__name__)


class ReportJobError(RuntimeError):
    """sbatch refused the report job (the cells were submitted; the message says how to build the report)."""


def _cell_config_hash(launcher: Any, config: DictConfig, overrides: Sequence[str], num: int) -> str | None:
    """The config hash cell `num` would record (composed as its job will be); None when it cannot be composed."""
    saved = HydraConfig.instance().cfg
    try:
        cfg = launcher._hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with read_write(cfg.hydra):
            cfg.hydra.job.num = num
            cfg.hydra.job.id = num
        HydraConfig.instance().set_config(cfg)
        return config_hash(validate(cfg))
    except Exception as e:  # submitting the cell is always safe: it skips itself when done
        log.debug("cell #%d: config not composed here (%s)", num, e)
        return None
    finally:
        if saved is not None:
            HydraConfig.instance().set_config(saved)


def completed_cells(launcher: Any, config: DictConfig, sweep: Path, nums: Sequence[int], overrides: Sequence[Any]):
    """The cells whose results.json is completed for the config they would run with now."""
    done = set()
    for num, ov in zip(nums, overrides):
        prev = read_json(sweep / str(num) / "results.json")
        completed = isinstance(prev, dict) and prev.get("status") == "completed"
        if completed and prev.get("config_hash") == _cell_config_hash(launcher, config, ov, num):
            done.add(num)
    return done


def queued_cells(data: dict[str, Any] | None) -> dict[int, str]:
    """num -> job id of the cells whose latest job the scheduler still holds (pending, running, requeued)."""
    if not data:
        return {}
    jobs = {num: e.get("job_id") for num, e in manifest.cell_entries(data) if e.get("job_id")}
    states = scheduler.job_states(jobs.values())
    return {num: j for num, j in jobs.items() if j in states and states[j].active}


def report_args(config: DictConfig) -> list[str]:
    """The `python -m landscape_sweep.report` arguments of the sweep's `report` node."""
    found = OmegaConf.select(config, "report")
    node = OmegaConf.to_container(found, resolve=True) if found is not None else {}
    args = ["--wandb"] if node.get("wandb") else []
    if node.get("facet"):
        args.append("report.facet=" + ",".join(map(str, node["facet"])))
    for key, values in (node.get("select") or {}).items():
        values = values if isinstance(values, list) else [values]
        args.append(f"report.select={key}=" + ",".join(map(str, values)))
    if node.get("unreached", "exclude") != "exclude":
        args.append(f"report.unreached={node['unreached']}")
    return args


def report_job_script(params: dict[str, Any], config: DictConfig, sweep: Path, after: Sequence[str]) -> str:
    """The report job's sbatch script; `LauncherConfigError` (one line) for a sweep dir, working dir or name that no
    #SBATCH line can carry (`scheduler.sbatch_value`: a newline, another control character, a backslash)."""
    try:
        return scheduler.report_script(
            sweep,
            python=sys.executable,
            cwd=str(Path.cwd()),
            after=after,
            report_args=report_args(config),
            name=str(params.get("name") or "landscape_sweep"),
            resources=dict(params.get("report_job") or {}),
            account=params.get("account"),
            qos=params.get("qos"),
            partition=params.get("partition"),
            setup=list(params.get("setup") or []),
        )
    except ValueError as e:
        raise _pack.LauncherConfigError(f"{e}; the detached sweep's report job could not run there") from None


def submit_report_job(params: dict[str, Any], config: DictConfig, sweep: Path, after: Sequence[str]) -> str:
    """sbatch the report job (see the module docstring); its job id."""
    script = report_job_script(params, config, sweep, after)
    try:
        return scheduler.sbatch(script, sweep / ".submitit" / "report")
    except scheduler.SubmitError as e:
        raise ReportJobError(
            f"hydra.launcher.report_job: sbatch rejected the report job ({e}); the cells are submitted: build the "
            f"report once they end with `python -m landscape_sweep.report {sweep}`"
        ) from None


def job_ids(jobs: Sequence[Any], nums: Sequence[int], size: int) -> dict[int, str]:
    """num -> the submitted job (array task) that runs it."""
    if size == 1:
        return {num: job.job_id for num, job in zip(nums, jobs)}
    return {num: job.job_id for job, chunk in zip(jobs, _pack.chunks(nums, size)) for num in chunk}


def launch(
    launcher: Any, executor: Any, config: DictConfig, nums: Sequence[int], job_overrides: Sequence[Any], size: int
) -> list[JobReturn]:
    """Submit the cells that need it and their report job, record them, print how to follow the sweep."""
    sweep = Path(str(config.hydra.sweep.dir)).absolute()
    report_job_script(launcher._params(), config, sweep, [])  # refuse what no report job can name, before submitting
    data = manifest.read_manifest(sweep)
    queued = queued_cells(data)
    done = completed_cells(launcher, config, sweep, nums, job_overrides)
    todo = [(n, ov) for n, ov in zip(nums, job_overrides) if n not in done and n not in queued]
    jobs = launcher._submit(executor, [n for n, _ in todo], [ov for _, ov in todo], size) if todo else []
    submitted = job_ids(jobs, [n for n, _ in todo], size)
    array = jobs[0].job_id.split("_")[0] if jobs else None
    report_job = None
    if array is not None:
        still = sorted({job.split("_")[0] for job in queued.values()})  # earlier arrays with cells still queued
        old_reports = manifest.report_jobs(data) if data else []
        try:
            report_job = submit_report_job(launcher._params(), config, sweep, [*still, array])
        finally:  # the array is recorded whether or not sbatch took the report job
            manifest.record_submission(sweep, submitted, dict(todo), array=array, report_job=report_job)
        waiting = scheduler.job_states(old_reports)
        scheduler.cancel([j for j, s in waiting.items() if s.state in scheduler.PENDING])
    _print_summary(sweep, submitted, array, report_job, len(done), queued)
    returns = []
    for num, ov in zip(nums, job_overrides):
        ret = JobReturn(overrides=list(ov), status=JobStatus.COMPLETED)
        why = (
            f"submitted as SLURM job {submitted[num]}"
            if num in submitted
            else ("already completed" if num in done else f"still queued as SLURM job {queued.get(num)}")
        )
        ret.return_value = why
        returns.append(ret)
    return returns


def _print_summary(
    sweep: Path, submitted: dict[int, str], array: str | None, report_job: str | None, done: int, queued: dict
) -> None:
    """What was submitted and the two commands to follow the sweep, on stdout (the command then exits 0)."""
    lines = [f"Sweep dir: {sweep}"]
    if array is not None:
        lines.append(f"Submitted {len(submitted)} cells as SLURM array {array} (tasks {', '.join(submitted.values())})")
        lines.append(f"Report job {report_job}: runs after every task has ended, writes {sweep}/report.md")
    else:
        lines.append("Nothing to submit")
    if done or queued:
        lines.append(f"Not submitted: {done} completed, {len(queued)} still queued")
    lines.append(f"Status:   python -m landscape_sweep.status {sweep}")
    lines.append(f"Resubmit: python -m landscape_sweep.resubmit {sweep}   (the cells not completed, a new report job)")
    print("\n".join(lines), flush=True)

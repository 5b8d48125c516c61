"""What SLURM knows about a sweep's jobs, and the sweep's report job: `squeue`, `sacct`, `sbatch`, `scancel`.

Used by `python -m landscape_sweep.status` (each cell's SLURM state and pending reason) and by the SLURM launchers
(the detached sweep's report job). Every query degrades to "unknown" when the command is missing or fails: a
sweep's status is then read from its results.json files and manifest alone.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# SLURM states of a job that has not ended (a requeued job passes through REQUEUED back to PENDING)
PENDING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
RUNNING = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"})
REPORT_JOB_DEFAULTS = {"cpus_per_task": 2, "mem_gb": 4, "timeout_min": 60, "partition": None}


@dataclass(frozen=True)
class JobState:
    """A job (or array task) as the scheduler reports it: `state` (PENDING, RUNNING, COMPLETED, CANCELLED, ...),
    the pending `reason` ('' when none) and the `elapsed` run time as squeue prints it ('' when unknown)."""

    job: str
    state: str
    reason: str = ""
    elapsed: str = ""

    @property
    def active(self) -> bool:
        """Whether the job has not ended (pending, running or being requeued)."""
        return self.state in PENDING or self.state in RUNNING


def slurm(*args: str, stdin: str | None = None) -> str | None:
    """The stdout of one SLURM command; None when it is missing, times out or fails."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60, input=stdin)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _squeue(ids: Sequence[str]) -> dict[str, JobState] | None:
    out = slurm("squeue", "-h", "-r", "--states=all", "-j", ",".join(ids), "-o", "%i|%T|%r|%M")
    if out is None:
        return None
    states = {}
    for line in out.splitlines():
        job, state, reason, elapsed = (line.strip().split("|") + ["", "", ""])[:4]
        if job:
            states[job] = JobState(job, state, "" if reason in ("None", "(null)") else reason, elapsed)
    return states


def _sacct(ids: Sequence[str]) -> dict[str, JobState]:
    out = slurm("sacct", "-n", "-P", "-X", "-j", ",".join(ids), "-o", "JobID,State")
    states = {}
    for line in (out or "").splitlines():
        job, _, rest = line.strip().partition("|")
        state = rest.split("|")[0].split(" ")[0]  # "CANCELLED by 1000" -> CANCELLED
        if job and state and state != "State":  # some sacct stand-ins print a header despite -n
            states[job] = JobState(job, state)
    return states


def job_states(job_ids: Iterable[str]) -> dict[str, JobState]:
    """The scheduler's view of these jobs / array tasks (`123`, `123_4`): squeue for the jobs it still holds
    (pending, running, recently ended), sacct for older ones; a job neither knows is left out."""
    wanted = sorted({j for j in job_ids if j})
    if not wanted:
        return {}
    parents = sorted({j.split("_")[0] for j in wanted})
    found = _squeue(parents)
    if found is None:  # one id the controller has forgotten can fail the whole query: ask per job
        found = {}
        for parent in parents:
            found.update(_squeue([parent]) or {})
    missing = [j for j in wanted if j not in found]
    if missing:
        found.update({j: s for j, s in _sacct(missing).items() if j not in found})
    return {j: found[j] for j in wanted if j in found}


SBATCH_PLAIN = re.compile(r"[A-Za-z0-9_./,:=+@%-]+")  # an #SBATCH value written as it is


def sbatch_value(key: str, value: object, *, pattern: bool = False, suffix: str = "") -> str:
    """`value` as it must be written into an `#SBATCH --opt=<value>` line so that sbatch reads it back unchanged: as
    it is when plain, else double-quoted with `"` escaped (sbatch ends an unquoted value at a space, and a newline
    would start a line of its own), and with `pattern` (an option sbatch expands filename patterns in, e.g.
    --output) `%` doubled; then `suffix` (ours, e.g. `/%j.out`) appended. ValueError in one line for a control
    character or a backslash (sbatch expands no pattern after a backslash): no quoting carries them."""
    text = str(value)
    bad = sorted({c for c in text if ord(c) < 32 or ord(c) == 127 or c == "\\"})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValueError(
            f"{key}={text!r}: must not contain {shown} (control characters and backslashes cannot be written into an "
            "#SBATCH line)"
        )
    if pattern:
        text = text.replace("%", "%%")
    text += suffix
    return text if SBATCH_PLAIN.fullmatch(text) else '"' + text.replace('"', '\\"') + '"'


def report_script(
    sweep_dir: Path,
    *,
    python: str,
    cwd: str,
    after: Sequence[str],
    report_args: Sequence[str],
    name: str,
    resources: dict,
    account: str | None = None,
    qos: str | None = None,
    partition: str | None = None,
    setup: Sequence[str] = (),
) -> str:
    """The sbatch script of a sweep's report job: one small CPU job that starts once every job in `after` has
    ended, whatever their state (`afterany`), and runs `python -m landscape_sweep.report <sweep_dir> ...`. Values are
    written so that sbatch reads them back as they are (`sbatch_value`); ValueError (one line) for a path or name
    that cannot be (a newline, another control character, a backslash)."""
    res = {**REPORT_JOB_DEFAULTS, **{k: v for k, v in resources.items() if v is not None}}
    sbatch_value("sweep_dir", sweep_dir)  # a bad sweep dir is named as given, not as its log dir below
    log = sbatch_value("sweep_dir", sweep_dir / ".submitit" / "report", pattern=True, suffix="/%j.out")
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={sbatch_value('name', f'{name}-report')}",
        f"#SBATCH --cpus-per-task={int(res['cpus_per_task'])}",
        f"#SBATCH --mem={int(float(res['mem_gb']) * 1024)}M",
        f"#SBATCH --time={max(1, int(res['timeout_min']))}",
        f"#SBATCH --output={log}",
        f"#SBATCH --chdir={sbatch_value('cwd', cwd)}",
        "#SBATCH --kill-on-invalid-dep=no",
    ]
    if after:
        lines.append(f"#SBATCH --dependency=afterany:{':'.join(sbatch_value('after', a) for a in after)}")
    for key, value in (("partition", res["partition"] or partition), ("account", account), ("qos", qos)):
        if value:
            lines.append(f"#SBATCH --{key}={sbatch_value(key, value)}")
    lines += [*setup, shlex.join([python, "-m", "landscape_sweep.report", str(sweep_dir), *report_args])]
    return "\n".join(lines) + "\n"


class SubmitError(RuntimeError):
    """sbatch refused a job (its message on one line)."""


def sbatch(script: str, log_dir: Path) -> str:
    """Submit a batch script; its job id. Raises SubmitError with sbatch's own message."""
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SubmitError(f"sbatch could not run: {e}") from None
    if proc.returncode != 0:
        raise SubmitError(" ".join(proc.stderr.split()) or f"sbatch exited {proc.returncode}")
    return proc.stdout.strip().split(";")[0]


def cancel(job_ids: Iterable[str]) -> None:
    """scancel these jobs (best effort)."""
    ids = [j for j in job_ids if j]
    if ids:
        slurm("scancel", *ids)

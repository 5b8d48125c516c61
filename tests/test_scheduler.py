"""The SLURM queries of `status` and the report job's script, against stand-in `squeue` / `sacct` / `sbatch`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from landscape_sweep import scheduler


def fake(bin_dir: Path, name: str, body: str) -> None:
    """An executable `name` on PATH running the bash `body` (it logs its arguments to <bin>/<name>.args)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(f'#!/bin/bash\necho "$@" >> {bin_dir}/{name}.args\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    return d


def test_job_states_reads_squeue_then_sacct_for_jobs_it_no_longer_holds(bin_dir):
    fake(
        bin_dir, "squeue", 'printf "7_0|RUNNING|None|1:02\\n7_1|PENDING|Resources|0:00\\n9|PENDING|Dependency|0:00\\n"'
    )
    fake(bin_dir, "sacct", 'printf "JobID|State|NodeList\\n7_2|CANCELLED by 0|n1\\n"')  # header despite -n
    states = scheduler.job_states(["7_0", "7_1", "7_2", "9", "8_0"])
    assert states == {
        "7_0": scheduler.JobState("7_0", "RUNNING", "", "1:02"),
        "7_1": scheduler.JobState("7_1", "PENDING", "Resources", "0:00"),
        "7_2": scheduler.JobState("7_2", "CANCELLED"),
        "9": scheduler.JobState("9", "PENDING", "Dependency", "0:00"),
    }
    assert [s.active for s in states.values()] == [True, True, False, True]
    assert (bin_dir / "squeue.args").read_text().split() == [
        "-h",
        "-r",
        "--states=all",
        "-j",
        "7,8,9",
        "-o",
        "%i|%T|%r|%M",
    ]
    assert "-j 7_2,8_0" in (bin_dir / "sacct.args").read_text()


def test_a_forgotten_job_id_does_not_hide_the_others(bin_dir):
    # squeue fails the whole query when one id is unknown: it is asked again per job
    fake(bin_dir, "squeue", 'case "$5" in 3) echo "3_0|RUNNING|None|0:05";; 3,4) exit 1;; *) exit 1;; esac')
    fake(bin_dir, "sacct", "exit 1")
    assert scheduler.job_states(["3_0", "4_0"]) == {"3_0": scheduler.JobState("3_0", "RUNNING", "", "0:05")}


def test_without_slurm_commands_nothing_is_known(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue, no sacct
    assert scheduler.job_states(["1_0"]) == {}


def test_report_script_waits_for_every_array_whatever_their_state(tmp_path):
    script = scheduler.report_script(
        tmp_path / "sweep",
        python="/venv/bin/python",
        cwd="/work dir",
        after=["11", "12"],
        report_args=["--wandb", "report.facet=optimizer.lr"],
        name="landscape_sweep",
        resources={"cpus_per_task": 1, "mem_gb": 2, "partition": None},
        account="lab",
        qos=None,
        partition="cpu",
        setup=["module load python"],
    )
    lines = script.splitlines()
    assert "#SBATCH --dependency=afterany:11:12" in lines and "#SBATCH --kill-on-invalid-dep=no" in lines
    assert {"#SBATCH --cpus-per-task=1", "#SBATCH --mem=2048M", "#SBATCH --time=60"} <= set(lines)
    assert {"#SBATCH --partition=cpu", "#SBATCH --account=lab", '#SBATCH --chdir="/work dir"'} <= set(lines)
    assert not any("--qos" in ln or "--gres" in ln or "gpus" in ln for ln in lines)  # a CPU job
    assert lines[-2:] == [
        "module load python",
        f"/venv/bin/python -m landscape_sweep.report {tmp_path / 'sweep'} --wandb report.facet=optimizer.lr",
    ]
    own = scheduler.report_script(
        tmp_path, python="p", cwd="c", after=[], report_args=[], name="n", resources={"partition": "small"},
        partition="gpu",
    )  # fmt: skip
    assert "#SBATCH --partition=small" in own and "--dependency" not in own


def test_sbatch_returns_the_job_id_or_its_one_line_error(bin_dir, tmp_path):
    fake(bin_dir, "sbatch", 'cat > /dev/null; echo "42;cluster"')
    assert scheduler.sbatch("#!/bin/bash\n", tmp_path / "logs") == "42" and (tmp_path / "logs").is_dir()
    fake(
        bin_dir,
        "sbatch",
        'echo "sbatch: error: Batch job submission failed:" >&2; echo "  Invalid account" >&2; exit 1',
    )
    with pytest.raises(scheduler.SubmitError, match=r"^sbatch: error: Batch job submission failed: Invalid account$"):
        scheduler.sbatch("#!/bin/bash\n", tmp_path / "logs")


def _report_lines(sweep: Path, cwd: str, **kw) -> list[str]:
    args = dict(python="/venv/bin/python", cwd=cwd, after=["11"], report_args=[], name="landscape_sweep", resources={})
    return scheduler.report_script(sweep, **{**args, **kw}).splitlines()


def test_report_script_quotes_paths_sbatch_would_misparse(tmp_path):
    """A space ends an unquoted #SBATCH value and `%` starts a filename pattern in --output (`%%` is a literal %;
    --chdir expands none): checked against sbatch 22.05 (`test_report_job_runs_in_a_dir_with_a_space_and_a_percent`)."""
    sweep = tmp_path / 'my sweep 100%"done"'
    lines = _report_lines(sweep, "/work dir/50%", name="my sweep")
    assert f'#SBATCH --output="{tmp_path}/my sweep 100%%\\"done\\"/.submitit/report/%j.out"' in lines, lines
    assert '#SBATCH --chdir="/work dir/50%"' in lines and '#SBATCH --job-name="my sweep-report"' in lines
    plain = _report_lines(tmp_path / "plain", "/work", partition="cpu")  # nothing to quote: as before
    assert f"#SBATCH --output={tmp_path}/plain/.submitit/report/%j.out" in plain and "#SBATCH --chdir=/work" in plain
    assert "#SBATCH --partition=cpu" in plain


@pytest.mark.parametrize(
    ("where", "key"),
    [("sweep", "sweep_dir"), ("cwd", "cwd"), ("name", "name"), ("partition", "partition")],
)
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\tb", "a\\b"])
def test_report_script_refuses_what_no_quoting_carries_in_one_line(tmp_path, where, key, bad):
    kw = {"sweep": tmp_path / "sweep", "cwd": "/work"}
    if where in kw:
        kw[where] = tmp_path / bad if where == "sweep" else f"/work/{bad}"
        extra = {}
    else:
        extra = {where: bad}
    with pytest.raises(ValueError) as err:
        _report_lines(kw["sweep"], kw["cwd"], **extra)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{key}=") and repr(bad)[1:-1] in msg, msg


@pytest.mark.slow
def test_report_job_runs_in_a_dir_with_a_space_and_a_percent(tmp_path):
    """The quoted lines as the local SLURM cluster parses them: the log lands in the sweep dir, the job runs in cwd."""
    from tests._support import slurm

    _, why = slurm.start()
    if why:
        pytest.skip(why)
    sweep, cwd = tmp_path / "a sweep 100%", tmp_path / "the cwd 5%"
    cwd.mkdir()
    script = scheduler.report_script(
        sweep, python="/bin/echo", cwd=str(cwd), after=[], report_args=[], name="h4 quoting", resources={}
    )
    script = script.replace("/bin/echo -m", "pwd; /bin/echo -m")
    job = scheduler.sbatch(script, sweep / ".submitit" / "report")
    log = sweep / ".submitit" / "report" / f"{job}.out"
    for _ in range(120):
        if log.is_file() and "landscape_sweep.report" in log.read_text():
            break
        import time

        time.sleep(0.5)
    assert log.read_text().splitlines()[:2] == [str(cwd), f"-m landscape_sweep.report {sweep}"], log.read_text()

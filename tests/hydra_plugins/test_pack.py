"""Many cells per job (hydra_plugins/landscape_sweep_launchers/_pack.py, `hydra.launcher.cells_per_job`).

The value check, the chunking, the job side (cells in order, a failing cell, saved returns skipped after a
requeue) and the submitting side (one `JobReturn` per cell, in order; a dead job's finished cells kept) over stand-ins;
then real sweeps on submitit's local executor: a tiny app whose cells fail, requeue and die inside packed jobs, and
the CLI (its main, in this process) on four quick cells in two jobs; and on the localhost SLURM cluster, four cells
in two array tasks, one of them requeued in the middle of its second cell (which stops itself there first:
tests/_support/gate.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import submitit
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.landscape_sweep_launchers import (
    CellJobError,
    LauncherConfigError,
    LocalLauncher,
    PendingError,
    SlurmLauncher,
    _pack,
    _pending,
    _private,
    cells_per_job,
    collect_packed,
)
from tests._support import gate, slurm
from tests._support.cli import QUICK, REPO, check_completed, run_in_process

# --- cells_per_job: the value ---


def test_cells_per_job_defaults_to_one_and_takes_positive_integers():
    assert cells_per_job({}) == 1 and cells_per_job({"cells_per_job": 1}) == 1
    assert cells_per_job({"cells_per_job": 8}) == 8


@pytest.mark.parametrize("value, shown", [(0, "0"), (-1, "-1"), ("x", "'x'"), (2.5, "2.5"), (True, "True")])
def test_a_bad_cells_per_job_fails_in_one_line(value, shown):
    with pytest.raises(LauncherConfigError) as e:
        cells_per_job({"cells_per_job": value})
    assert str(e.value) == (
        f"hydra.launcher.cells_per_job={shown}: must be an integer >= 1 "
        "(the number of cells each submitted job runs; 1: one cell per job)"
    )
    assert isinstance(e.value, ValueError)  # the CLI's precheck turns it into its one-line config error


@pytest.mark.parametrize("preset", ["slurm", "local"])
@pytest.mark.parametrize("value, shown", [("0", "0"), ("-1", "-1"), ("x", "'x'")])
def test_the_cli_refuses_a_bad_cells_per_job_in_one_line_before_writing(
    preset, value, shown, tmp_path, monkeypatch, capsys, data_dir
):
    from landscape_sweep.pipeline.app import main

    monkeypatch.setenv("LANDSCAPE_SWEEP_ROOT", str(tmp_path))
    argv = ["-m", f"hydra/launcher={preset}", f"hydra.launcher.cells_per_job={value}", "model.depth=1,2"]
    with pytest.raises(SystemExit) as e:
        main([*argv, f"paths.data_dir={data_dir}"])
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        f"landscape_sweep: config error: hydra.launcher.cells_per_job={shown}: must be an integer >= 1 "
        "(the number of cells each submitted job runs; 1: one cell per job)\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing submitted


def test_presets_have_cells_per_job_one(compose_cfg):
    for preset in ("slurm", "slurm_gpu", "local"):
        launcher = compose_cfg([f"hydra/launcher={preset}"]).hydra.launcher
        assert launcher.cells_per_job == 1, preset
    local = compose_cfg(["hydra/launcher=local", "hydra.launcher.cells_per_job=3"]).hydra.launcher
    assert local._target_ == "hydra_plugins.landscape_sweep_launchers.LocalLauncher" and local.cells_per_job == 3


def test_cells_per_job_is_not_handed_to_submitit():
    assert "cells_per_job" in _private.OWN_KEYS


# --- chunks ---


def test_chunks_are_consecutive_and_in_order():
    assert _pack.chunks([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]
    assert _pack.chunks([0, 1, 2, 3], 2) == [[0, 1], [2, 3]]
    assert _pack.chunks([0, 1, 2], 1) == [[0], [1], [2]]
    assert _pack.chunks([0, 1, 2], 10) == [[0, 1, 2]]  # larger than the sweep: one job


# --- the job side ---


class _Cells:
    """Stands in for the launcher's job side: records each cell it runs; `fail` cells raise outside the task."""

    def __init__(self, fail=(), task_fail=()):
        self.ran, self.fail, self.task_fail = [], set(fail), set(task_fail)

    def __call__(self, overrides, job_dir_key, num, job_id, state):
        self.ran.append(num)
        if num in self.fail:
            raise RuntimeError(f"no config for cell {num}")
        status = JobStatus.FAILED if num in self.task_fail else JobStatus.COMPLETED
        value = ValueError(f"cell {num} raised") if num in self.task_fail else num * 10
        return JobReturn(overrides=list(overrides), status=status, _return_value=value)


@pytest.fixture
def job_env(monkeypatch, tmp_path):
    """submitit's JobEnvironment of job `7_1` whose folder is tmp_path."""
    env = SimpleNamespace(job_id="7_1", paths=SimpleNamespace(folder=tmp_path))
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: env)
    return env


def _args(nums):
    return [_private.job_args([f"x={n}"], n, "S") for n in nums]


def test_packed_job_runs_its_cells_in_order_and_a_failing_cell_does_not_stop_the_others(job_env, capsys):
    cells = _Cells(fail={4}, task_fail={5})
    returns = _pack.PackedCells(cells)(_args([3, 4, 5, 6]))
    assert cells.ran == [3, 4, 5, 6]
    assert [r.status for r in returns] == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.FAILED, JobStatus.COMPLETED]
    assert [r.overrides for r in returns] == [["x=3"], ["x=4"], ["x=5"], ["x=6"]]
    assert str(_private.job_error(returns[1])) == "no config for cell 4"  # raised outside the task function
    assert "RuntimeError: no config for cell 4" in capsys.readouterr().err  # its traceback is in the job's log
    saved = sorted(p.name for p in job_env.paths.folder.iterdir())
    assert saved == [f"7_1_cell{n}_return.pkl" for n in (3, 4, 5, 6)]


def test_a_requeued_packed_job_does_not_run_its_finished_cells_again(job_env, capsys):
    first = _Cells(task_fail={1})
    _pack.PackedCells(first)(_args([0, 1]))  # cells 0 and 1 ended, then the job was requeued during cell 2
    again = _Cells()
    returns = _pack.PackedCells(again)(_args([0, 1, 2]))
    assert again.ran == [2]
    assert [r.return_value for r in (returns[0], returns[2])] == [0, 20]
    assert returns[1].status == JobStatus.FAILED and str(_private.job_error(returns[1])) == "cell 1 raised"
    out = capsys.readouterr().out
    assert "cell #0 ended before this job was requeued: not run again" in out and "cell #2 ended" not in out


def test_checkpoint_requeues_the_same_cells():
    packed = _pack.PackedCells(_Cells())
    delayed = packed.checkpoint(_args([0, 1]))
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is packed and delayed.args == (_args([0, 1]),)


def test_a_requeue_first_lets_the_running_training_write_its_last_checkpoint(monkeypatch, capsys):
    calls = []
    hook = types.ModuleType(_pack.SAVE_PENDING[0])
    hook.save_pending = lambda: calls.append("saved")
    monkeypatch.setitem(sys.modules, _pack.SAVE_PENDING[0], hook)
    packed = _pack.PackedCells(_Cells())
    assert packed.checkpoint(_args([0])).function is packed
    one = SlurmLauncher(submitit_folder="unused")
    assert one.checkpoint(*_args([0])[0]).function is one  # one cell per job: the plugin's requeue, after the hook
    assert calls == ["saved", "saved"]

    def broken():
        raise OSError("disk full")

    hook.save_pending = broken  # a failing hook is reported, the requeue goes on
    assert packed.checkpoint(_args([0])).function is packed
    assert "before requeue: landscape_sweep.training.callbacks.save_pending() failed: OSError: disk full" in (
        capsys.readouterr().err
    )
    monkeypatch.delitem(sys.modules, _pack.SAVE_PENDING[0])  # a process that never trained: nothing to write
    assert packed.checkpoint(_args([0])).function is packed


def test_the_requeue_hook_is_landscape_sweeps_save_pending():
    from landscape_sweep.training import callbacks

    assert callable(getattr(callbacks, _pack.SAVE_PENDING[1]))


def test_an_unpicklable_return_is_not_saved(tmp_path, capsys):
    ret = JobReturn(overrides=[], status=JobStatus.COMPLETED, _return_value=(x for x in ()))  # a generator
    _pack.save_return(ret, tmp_path / "r.pkl")
    assert list(tmp_path.iterdir()) == [] and "cell return not saved (TypeError" in capsys.readouterr().err
    assert _pack.load_return(tmp_path / "r.pkl") is None


# --- the submitting side ---


class _Job:
    def __init__(self, job_id: str, folder: Path, result=None, error: Exception | None = None, done: bool = True):
        self.job_id, self._result, self._error, self.state, self._done = job_id, result, error, "FAILED", done
        self.paths = SimpleNamespace(
            folder=folder, stderr=folder / f"{job_id}_0_log.err", result_pickle=folder / f"{job_id}_0_result.pkl"
        )

    def done(self):
        return self._done

    def wait(self):
        pass

    def results(self):
        if self._error is not None:
            raise self._error
        return [self._result]


def _ret(n: int, ok: bool = True) -> JobReturn:
    if ok:
        return JobReturn(overrides=[f"x={n}"], status=JobStatus.COMPLETED, _return_value=n)
    return JobReturn(overrides=[f"x={n}"], status=JobStatus.FAILED, _return_value=ValueError(f"boom {n}"))


def test_collect_packed_names_each_cell(tmp_path):
    job = _Job("8_0", tmp_path, result=[_ret(0), _ret(1, ok=False), _ret(2)])
    returns = collect_packed(job, [0, 1, 2], [["x=0"], ["x=1"], ["x=2"]])
    assert [r.return_value for r in (returns[0], returns[2])] == [0, 2]
    with pytest.raises(CellJobError, match=r"^cell #1 \(x=1\) SLURM job 8_0 failed: ValueError: boom 1$"):
        _ = returns[1].return_value


def test_a_dead_packed_job_keeps_the_cells_it_finished(tmp_path):
    _pack.save_return(_ret(4), _pack.return_path(tmp_path, "8_1", 4))
    _pack.save_return(_ret(5, ok=False), _pack.return_path(tmp_path, "8_1", 5))
    job = _Job("8_1", tmp_path, error=RuntimeError("Job 8_1 has not produced any output (state: FAILED)"))
    returns = collect_packed(job, [4, 5, 6], [["x=4"], ["x=5"], ["x=6"]])
    assert returns[0].status == JobStatus.COMPLETED and returns[0].return_value == 4
    assert str(_private.job_error(returns[1])) == "cell #5 (x=5) SLURM job 8_1 failed: ValueError: boom 5"
    assert returns[2].status == JobStatus.FAILED and returns[2].overrides == ["x=6"]
    assert str(_private.job_error(returns[2])) == (
        "cell #6 (x=6) SLURM job 8_1 ended without a result (state FAILED): Job 8_1 has not produced any output "
        f"(state: FAILED); log: {tmp_path}/8_1_0_log.err"
    )


class _Executor:
    cluster = "local"

    def __init__(self, folder: Path, returns_of):
        self.folder, self.returns_of, self.submitted = folder, returns_of, None

    def map_array(self, fn, *args):
        self.submitted = (fn, [tuple(a) for a in zip(*args)])
        return [_Job(f"9_{i}", self.folder, **self.returns_of(i, a)) for i, a in enumerate(zip(*args))]


def _launch(tmp_path, monkeypatch, overrides, returns_of, cls=LocalLauncher, reports=None, **params):
    ex, reports = _Executor(tmp_path, returns_of), [] if reports is None else reports
    ex.cluster = "slurm" if cls is SlurmLauncher else "local"
    monkeypatch.setattr(_private, "make_executor", lambda launcher: ex)
    launcher = cls(submitit_folder=str(tmp_path / "%j"), **params)
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    ctx = SimpleNamespace(callbacks=SimpleNamespace(on_multirun_end=lambda config: reports.append(config)))
    launcher.setup(hydra_context=ctx, task_function=None, config=cfg)
    return launcher.launch(overrides, initial_job_idx=0), ex, reports, launcher


def _ran(i, args):
    """A packed job whose cells all ran: cell `x=3` failed, the others completed."""
    nums = [a[2] for a in args[0]]
    return {"result": [_ret(n, ok=n != 3) for n in nums]}


def test_launch_packs_consecutive_cells_and_returns_one_result_per_cell_in_order(tmp_path, monkeypatch, caplog):
    overrides = [[f"x={n}"] for n in range(5)]
    with caplog.at_level("INFO"):
        returns, ex, reports, launcher = _launch(tmp_path, monkeypatch, overrides, _ran, cells_per_job=2)
    fn, per_job = ex.submitted
    assert isinstance(fn, _pack.PackedCells) and fn.launcher is launcher
    assert [[a[:4] for a in cells] for (cells,) in per_job] == [
        [(["x=0"], "hydra.sweep.dir", 0, "job_id_for_0"), (["x=1"], "hydra.sweep.dir", 1, "job_id_for_1")],
        [(["x=2"], "hydra.sweep.dir", 2, "job_id_for_2"), (["x=3"], "hydra.sweep.dir", 3, "job_id_for_3")],
        [(["x=4"], "hydra.sweep.dir", 4, "job_id_for_4")],
    ]
    assert [r.overrides for r in returns] == overrides
    assert [r.status for r in returns] == [JobStatus.COMPLETED] * 3 + [JobStatus.FAILED, JobStatus.COMPLETED]
    assert str(_private.job_error(returns[3])) == "cell #3 (x=3) SLURM job 9_1 failed: ValueError: boom 3"
    assert len(reports) == 1  # a cell failed: the launcher builds the report before Hydra raises
    assert "submitted 3 jobs of up to 2 cells: 9_0 (#0-1), 9_1 (#2-3), 9_2 (#4)" in caplog.text


def test_cells_per_job_larger_than_the_sweep_is_one_job(tmp_path, monkeypatch):
    overrides = [[f"x={n}"] for n in (0, 1, 2)]
    returns, ex, reports, _ = _launch(tmp_path, monkeypatch, overrides, _ran, cls=SlurmLauncher, cells_per_job=64)
    assert len(ex.submitted[1]) == 1 and [r.return_value for r in returns] == [0, 1, 2] and reports == []


def test_one_cell_per_job_submits_the_launcher_itself_as_before(tmp_path, monkeypatch):
    def one(i, args):
        return {"result": _ret(args[2])}

    overrides = [["x=0"], ["x=1"]]
    for params in ({}, {"cells_per_job": 1}):
        returns, ex, _, launcher = _launch(tmp_path, monkeypatch, overrides, one, **params)
        assert ex.submitted[0] is launcher and [a[:3] for a in ex.submitted[1]] == [
            (["x=0"], "hydra.sweep.dir", 0),
            (["x=1"], "hydra.sweep.dir", 1),
        ]
        assert [r.return_value for r in returns] == [0, 1]


def test_a_cancelled_packed_array_reports_the_cells_its_jobs_finished(tmp_path, monkeypatch):
    squeue = "9_0|RUNNING|debug|None\n9_1|PENDING|debug|PartitionConfig\n"
    monkeypatch.setattr(_pending, "slurm", lambda *a: {"squeue": squeue}.get(a[0], ""))
    overrides, reports = [[f"x={n}"] for n in range(4)], []
    with pytest.raises(PendingError, match=r"job 9_1 can never start \(PartitionConfig\)"):
        _launch(tmp_path, monkeypatch, overrides, lambda i, a: {"done": False}, SlurmLauncher, reports, cells_per_job=2)
    assert reports == []  # no cell had finished: no report
    _pack.save_return(_ret(0), _pack.return_path(tmp_path, "9_0", 0))  # task 9_0 finished cell 0, runs cell 1
    with pytest.raises(PendingError):
        _launch(tmp_path, monkeypatch, overrides, lambda i, a: {"done": False}, SlurmLauncher, reports, cells_per_job=2)
    assert len(reports) == 1


def test_launch_refuses_a_bad_cells_per_job_before_submitting(tmp_path, monkeypatch):
    with pytest.raises(LauncherConfigError, match=r"^hydra\.launcher\.cells_per_job='x': must be an integer >= 1 "):
        _launch(tmp_path, monkeypatch, [["x=0"]], _ran, cells_per_job="x")


# --- real sweeps on submitit's local executor ---

APP = """
import os, signal, time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback


class Report(Callback):
    def on_multirun_end(self, config, **kwargs):
        with open(Path(config.hydra.sweep.dir) / "report.txt", "a") as f:
            f.write("report\\n")


def task(cfg):
    sweep = Path(HydraConfig.get().runtime.output_dir).parent
    with open(sweep / "runs.txt", "a") as f:
        f.write(f"{cfg.x} {os.getpid()}\\n")
    if cfg.x == 1:
        raise ValueError("boom")
    if cfg.x == 4 and not (sweep / "requeued").exists():
        (sweep / "requeued").write_text("")
        os.kill(os.getpid(), signal.SIGUSR2)  # as a preemption: submitit checkpoints and requeues the job
        while True:  # until the requeue ends this process
            time.sleep(1)
    if cfg.x == 5:
        os.kill(os.getpid(), signal.SIGKILL)  # no exception, no result: as the OOM killer would
    Path("done").write_text(str(cfg.x))
"""
CONFIG = """
defaults:
  - override hydra/launcher: local
  - _self_
x: 0
task_name: tiny
hydra:
  sweep: {dir: sweep, subdir: "${hydra.job.num}"}
  job: {chdir: true}
  launcher: {timeout_min: 5, cells_per_job: 3}
  callbacks: {report: {_target_: tinyapp.Report}}
"""
MAIN = """
from pathlib import Path

import hydra
from tinyapp import task

hydra.main(version_base="1.3", config_path=str(Path(__file__).parent / "conf"), config_name="config")(task)()
"""


@pytest.mark.slow
def test_packed_local_cells_fail_requeue_and_die_without_taking_their_job_down(tmp_path):
    """Cells 0-2 and 3-5 in two jobs: cell 1 raises, cell 4's job is requeued, then cell 5 kills its process."""
    (tmp_path / "conf" / "hydra" / "launcher").mkdir(parents=True)
    (tmp_path / "conf" / "config.yaml").write_text(textwrap.dedent(CONFIG))
    preset = REPO / "conf" / "hydra" / "launcher" / "local.yaml"
    (tmp_path / "conf" / "hydra" / "launcher" / "local.yaml").write_text(preset.read_text())
    (tmp_path / "tinyapp.py").write_text(textwrap.dedent(APP))
    (tmp_path / "main.py").write_text(textwrap.dedent(MAIN))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HYDRA_FULL_ERROR": "0"}
    argv = [sys.executable, "main.py", "-m", "x=0,1,2,3,4,5"]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-4000:]
    sweep = tmp_path / "sweep"
    runs = [line.split() for line in (sweep / "runs.txt").read_text().splitlines()]
    # every cell ran once, in order within its job, except the interrupted cell 4; cell 3 did not run again
    first, second = [r for r in runs if r[0] in "012"], [r for r in runs if r[0] in "345"]
    assert [x for x, _ in first] == ["0", "1", "2"] and [x for x, _ in second] == ["3", "4", "4", "5"], runs
    assert len({pid for _, pid in first}) == 1  # one process for cells 0-2, the failing cell 1 included
    assert second[0][1] == second[1][1] != second[2][1] == second[3][1]  # the requeue restarted the process
    assert [(sweep / str(i) / "done").exists() for i in range(6)] == [True, False, True, True, True, False]
    for i in range(6):  # each cell is its own Hydra job: its own dir and .hydra/ files
        assert OmegaConf.load(sweep / str(i) / ".hydra" / "overrides.yaml") == [f"x={i}"]
        assert OmegaConf.load(sweep / str(i) / ".hydra" / "hydra.yaml").hydra.job.num == i
    assert len(list((sweep / ".submitit").glob("*/*_submitted.pkl"))) == 2  # two jobs
    assert "cell #1 (x=1) SLURM job " in out and " failed: ValueError: boom" in out, out[-4000:]
    assert "cell #5 (x=5) SLURM job " in out and " ended without a result (state " in out
    assert "cell #3 " not in out and "cell #4 " not in out  # finished before the kill: taken from the saved returns
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "cell #3 ended before this job was requeued: not run again" in logs, logs[-4000:]
    assert (sweep / "report.txt").read_text() == "report\n"
    assert (sweep / "multirun.yaml").is_file()


@pytest.mark.slow
def test_cli_packs_four_cells_into_two_local_jobs(tmp_path, data_dir):
    # the CLI's main submits from this process; the two packed jobs are processes of submitit's local executor
    argv = ["-m", "hydra/launcher=local", "hydra.launcher.cells_per_job=2"]
    argv += [*QUICK, "model.depth=1,2", "optimizer=sgd,adam", f"paths.data_dir={data_dir}"]
    start = time.monotonic()
    proc = run_in_process(argv, tmp_path)
    took = time.monotonic() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    sweep = next((tmp_path / "logs" / "landscape_sweep" / "multiruns").iterdir())
    assert len(list((sweep / ".submitit").glob("*/*_submitted.pkl"))) == 2, out[-4000:]
    cells = {}
    for i in range(4):
        results = check_completed(sweep / str(i))
        cells[i] = (results["cell"]["depth"], results["cell"]["optimizer"])
        assert (sweep / str(i) / ".hydra" / "config.yaml").is_file()
        overrides = OmegaConf.load(sweep / str(i) / ".hydra" / "overrides.yaml")
        assert f"model.depth={cells[i][0]}" in overrides
        log = next((sweep / str(i)).glob("*.log")).read_text()  # each cell logs into its own job dir
        assert [j for j in range(4) if f"cell {sweep / str(j)}: completed" in log] == [i], log
    assert cells == {0: (1, "sgd"), 1: (1, "adam"), 2: (2, "sgd"), 3: (2, "adam")}
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert sorted(table["job"]) == [0, 1, 2, 3] and set(table["status"]) == {"completed"}
    assert (sweep / "report.md").is_file() and (sweep / "multirun.yaml").is_file()
    assert json.loads((sweep / "0" / "results.json").read_text())["status"] == "completed"
    print(f"4 cells in 2 local jobs: {took:.1f} s")


# --- a real SLURM cluster: a packed array task requeued in the middle of its second cell ---

# one CPU and 1 GB per job, so the two jobs run side by side on a 2-core node; last.ckpt after every epoch
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
SLURM += ["hydra.launcher.timeout_min=20", "trainer.checkpoint_every_s=0"]
# 3 short epochs; cell 1 stops itself after its first (the gate), while its job's cell 0 is done
# 4 epochs: the requeue's SIGTERM is acted on after the gated epoch or, when the handler runs only after the next
# one-batch epoch (EpochAsBatch), one epoch later; either way before the last, so the requeued cell always resumes
# (with 3 epochs the late case left a finished last.ckpt, which is retrained: 2 of 5 clean-clone CI runs)
CELLS = [*QUICK, "trainer.max_epochs=4"]
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "epochs")


@pytest.mark.slow
def test_a_requeued_packed_slurm_job_skips_its_finished_cell_and_resumes_the_interrupted_one(
    slurm_cluster, tmp_path, data_dir
):
    # 4 cells, 2 per array task; cells 0 and 1 (task 0) differ only in a run-only key: cell 0 is the reference
    overrides = ["model.depth=1,2", "trainer.enable_model_summary=false,true", f"paths.data_dir={data_dir}"]
    argv = ["-m", *SLURM, "hydra.launcher.cells_per_job=2", *CELLS, *overrides]
    env = gate.env(slurm.env(tmp_path), tmp_path / "gate", "*/multiruns/*/1/checkpoints/seed0", 1)
    start = time.monotonic()
    with ThreadPoolExecutor(1) as pool:  # the CLI's main submits and waits in this process, the test acts meanwhile
        run = pool.submit(run_in_process, argv, tmp_path, env=env)
        try:
            pid = gate.wait_stopped(tmp_path / "gate", alive=lambda: not run.done())
            sweep = next((tmp_path / "logs" / "landscape_sweep" / "multiruns").iterdir())
            ckpt = sweep / "1" / "checkpoints" / "seed0" / "last.ckpt"
            assert (sweep / "0" / "results.json").is_file()  # the job ran cell 0 to its end before cell 1
            first_done = (sweep / "0" / "results.json").stat().st_mtime_ns
            job = next(sweep.glob(".submitit/*_0")).name
            # the requeue's SIGTERM, pending in the stopped cell before SLURM continues it (SIGCONT comes first)
            os.kill(pid, signal.SIGTERM)
            slurm.requeue(job)
            proc = run.result(timeout=600)
        finally:
            if not run.done():
                slurm.scancel_arrays(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert slurm.job_field(job, "Restarts") == "1"
    sbatch = next((sweep / ".submitit").glob(".submission_file_*.sh")).read_text()
    assert "#SBATCH --array=0-1" in sbatch  # 4 cells in 2 array tasks
    logs = "".join(p.read_text() for p in (sweep / ".submitit" / job).glob("*_log.*"))
    assert "cell #0 ended before this job was requeued: not run again" in logs, logs[-4000:]
    assert f"seed 0: resuming from {ckpt}" in logs, logs[-4000:]
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == first_done  # cell 0 completed once
    results = [check_completed(sweep / str(i)) for i in range(4)]
    assert [r["cell"]["depth"] for r in results] == [1, 1, 2, 2]
    ref, requeued = results[0], results[1]
    assert requeued["config_hash"] == ref["config_hash"]  # the interrupted cell resumed to the same result
    for a, b in zip(ref["endpoints"], requeued["endpoints"]):
        assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}
    assert [c["loss_barrier"] for c in ref["connectivity"]] == [c["loss_barrier"] for c in requeued["connectivity"]]
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert sorted(table["job"]) == [0, 1, 2, 3] and set(table["status"]) == {"completed"}
    assert (sweep / "report.md").is_file()
    print(f"4 cells in 2 SLURM jobs, one requeued: {time.monotonic() - start:.1f} s")

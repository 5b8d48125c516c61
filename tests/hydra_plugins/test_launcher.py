"""The collect-every-cell launchers (hydra_plugins/landscape_sweep_launchers) without a SLURM cluster.

Plugin discovery, the version pin of the private-API wrappers and each wrapper against the installed libraries,
`collect`, `launch` over a stand-in executor, and a real sweep on submitit's local executor in which one cell's
process is killed. tests/pipeline/test_slurm.py runs the same launcher on a real cluster.
"""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import submitit
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as plugin
from omegaconf import OmegaConf

from hydra_plugins.landscape_sweep_launchers import (
    CellJobError,
    LocalLauncher,
    PendingError,
    SlurmLauncher,
    _pending,
    _private,
    collect,
)

TARGET = "hydra_plugins.landscape_sweep_launchers.SlurmLauncher"


def test_launchers_are_discovered_hydra_plugins():
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher

    names = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Launcher)}
    assert {TARGET, "hydra_plugins.landscape_sweep_launchers.LocalLauncher"} <= names


# --- the private APIs: version pin, then each wrapper against the installed libraries ---


def test_private_api_wrappers_were_checked_against_the_installed_versions():
    mismatches = _private.version_mismatches()
    assert not mismatches, "\n".join(mismatches)


def test_a_version_change_names_the_wrappers_to_recheck(monkeypatch):
    monkeypatch.setattr(_private, "CHECKED", {**_private.CHECKED, "hydra-submitit-launcher": "0.9"})
    (line,) = _private.version_mismatches()
    assert line.startswith("hydra-submitit-launcher is 1.2.0, the private-API wrappers in ")
    assert "checked against 0.9: re-check job_args: BaseSubmititLauncher.__call__(" in line
    assert "make_executor: " in line and "\n" not in line


def test_job_args_are_the_plugin_job_signature():
    names = list(inspect.signature(plugin.BaseSubmititLauncher.__call__).parameters)
    assert names == ["self", "sweep_overrides", "job_dir_key", "job_num", "job_id", "singleton_state"]
    assert _private.job_args(("a=1",), 3, "S") == (["a=1"], "hydra.sweep.dir", 3, "job_id_for_3", "S")
    src = inspect.getsource(plugin.BaseSubmititLauncher.launch)  # the plugin builds the same tuple
    assert '"hydra.sweep.dir",' in src and 'f"job_id_for_{idx}",' in src and "Singleton.get_state()," in src


def test_hydra_state_is_what_the_job_restores():
    from hydra.core.singleton import Singleton

    state = _private.hydra_state()
    assert {"instances", "omegaconf_resolvers"} <= set(state)
    Singleton.set_state(state)


class _Stop(Exception):
    pass


class _RecordingExecutor:
    """Stands in for submitit.AutoExecutor: records its set-up, stops at submission."""

    calls: list = []

    def __init__(self, folder, cluster=None, **kwargs):
        self.calls.append(("init", folder, cluster, kwargs))

    def update_parameters(self, **kwargs):
        self.calls.append(("update", kwargs))

    def map_array(self, *args):
        raise _Stop


@pytest.mark.parametrize("preset, ours", [("slurm", SlurmLauncher), ("submitit_local", LocalLauncher)])
def test_make_executor_sets_up_what_the_plugin_sets_up(compose_cfg, monkeypatch, tmp_path, preset, ours):
    cfg = compose_cfg([f"hydra/launcher={preset}", f"hydra.sweep.dir={tmp_path}"])
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_")
    monkeypatch.setattr(submitit, "AutoExecutor", _RecordingExecutor)
    base = plugin.SlurmLauncher if preset == "slurm" else plugin.LocalLauncher
    theirs = base(**{k: v for k, v in params.items() if k not in _private.OWN_KEYS})  # the plugin knows no own keys
    theirs.setup(hydra_context=None, task_function=None, config=cfg)
    _RecordingExecutor.calls = []
    with pytest.raises(_Stop):
        theirs.launch([["seed=1"]], 0)
    expected, _RecordingExecutor.calls = _RecordingExecutor.calls, []
    _private.make_executor(ours(**params))
    assert _RecordingExecutor.calls == expected and expected[0][2] == base._EXECUTOR
    assert ("pending_timeout_min" in params) == (preset == "slurm")


def test_our_schema_is_the_plugin_schema_plus_our_keys():
    from dataclasses import fields

    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    from hydra_plugins.landscape_sweep_launchers import LandscapeSlurmConf

    ours, theirs = {f.name for f in fields(LandscapeSlurmConf)}, {f.name for f in fields(SlurmQueueConf)}
    assert ours - theirs == set(_private.OWN_KEYS) and theirs <= ours
    assert LandscapeSlurmConf._target_ == TARGET


def test_quiet_sacct_errors_logs_submitit_s_first_sacct_error_once(monkeypatch, tmp_path, caplog):
    from submitit.slurm.slurm import SlurmInfoWatcher

    monkeypatch.setenv("PATH", str(tmp_path))  # no sacct: every poll fails
    watcher = SlurmInfoWatcher(delay_s=600)
    watcher.register_job("41_0")
    with caplog.at_level(logging.WARNING), _private.quiet_sacct_errors():
        for _ in range(3):
            watcher.update()
        logging.getLogger("submitit").warning("something else")
    assert watcher.num_calls == 3
    msgs = [(r.name, r.getMessage()) for r in caplog.records]
    assert len(msgs) == 2 and msgs[1] == ("submitit", "something else"), msgs
    assert msgs[0][0] == "hydra_plugins.landscape_sweep_launchers"
    assert msgs[0][1].startswith("Call #1 - Bypassing sacct error ")
    assert msgs[0][1].endswith("(further sacct errors are not logged)")
    caplog.clear()
    watcher.update()  # outside the context submitit logs as before
    assert [r.name for r in caplog.records] == ["submitit"]


def test_job_error_reads_a_failed_job_without_raising(capsys):
    err = ValueError("boom")
    assert _private.job_error(JobReturn(status=JobStatus.FAILED, _return_value=err)) is err
    assert capsys.readouterr().err == ""


class Recorder(Callback):
    configs: list = []

    def on_multirun_end(self, config, **kwargs):
        self.configs.append(config)


def test_run_multirun_end_runs_the_configured_callbacks():
    from hydra._internal.callbacks import Callbacks
    from hydra.types import HydraContext

    cfg = OmegaConf.create({"hydra": {"callbacks": {"r": {"_target_": f"{__name__}.Recorder"}}}})
    Recorder.configs = []
    _private.run_multirun_end(HydraContext(config_loader=None, callbacks=Callbacks(cfg)), cfg)
    assert Recorder.configs == [cfg]


# --- collect: every job becomes a JobReturn naming its cell ---


class _Job:
    def __init__(self, job_id: str, result=None, error: Exception | None = None, done: bool = True):
        self.job_id, self._result, self._error, self._done = job_id, result, error, done
        self.state = "FAILED"
        folder = Path(f"/sweep/.submitit/{job_id}")
        self.paths = SimpleNamespace(stderr=folder / f"{job_id}_0_log.err", result_pickle=folder / "none.pkl")

    def done(self):
        return self._done

    def results(self):
        if self._error is not None:
            raise self._error
        return [self._result]


def test_collect_names_the_cell_of_a_job_without_result():
    err = RuntimeError(
        "Job 7_3 (task: 0) with path /p/7_3_0_result.pkl\nhas not produced any output (state: FAILED)\n"
        "Error stream produced:\n----------------------------------------\nsrun: error: task 0: Killed"
    )
    overrides = ["model.depth=2", "hydra.launcher.mem_gb=1", "optimizer=sam"]
    ret = collect(_Job("7_3", error=err), 3, overrides)
    assert ret.status == JobStatus.FAILED and ret.overrides == overrides
    with pytest.raises(CellJobError) as e:
        _ = ret.return_value
    assert str(e.value) == (
        "cell #3 (model.depth=2 optimizer=sam) SLURM job 7_3 ended without a result (state FAILED): "
        "Job 7_3 (task: 0) with path /p/7_3_0_result.pkl has not produced any output (state: FAILED); "
        "log: /sweep/.submitit/7_3/7_3_0_log.err"
    )


def test_collect_wraps_a_task_error_and_passes_successes_through():
    bad = JobReturn(overrides=["seed=1"], status=JobStatus.FAILED, _return_value=ValueError("boom\n  more"))
    ret = collect(_Job("9_0", result=bad), 0, ["seed=1"])
    with pytest.raises(CellJobError, match=r"^cell #0 \(seed=1\) SLURM job 9_0 failed: ValueError: boom more$") as e:
        _ = ret.return_value
    assert isinstance(e.value.__cause__, ValueError)
    ok = JobReturn(overrides=["seed=2"], status=JobStatus.COMPLETED, _return_value=None)
    assert collect(_Job("9_1", result=ok), 1, ["seed=2"]) is ok


# --- launch: submit once, collect all, report before failing ---


class _Executor:
    cluster = "slurm"

    def __init__(self, jobs, error: Exception | None = None):
        self.jobs, self.submitted, self.error = jobs, None, error

    def map_array(self, fn, *args):
        if self.error is not None:
            raise self.error
        self.submitted = (fn, [tuple(a) for a in zip(*args)])
        return self.jobs


def _launcher(tmp_path, jobs, monkeypatch, error=None, **params):
    ex, reports = _Executor(jobs, error), []
    monkeypatch.setattr(_private, "make_executor", lambda launcher: ex)
    launcher = SlurmLauncher(submitit_folder=str(tmp_path / "%j"), **params)
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    ctx = SimpleNamespace(callbacks=SimpleNamespace(on_multirun_end=lambda config: reports.append(config)))
    launcher.setup(hydra_context=ctx, task_function=None, config=cfg)
    return launcher, ex, reports


def test_launch_collects_every_cell_and_reports_before_failing(tmp_path, monkeypatch):
    ok = JobReturn(overrides=["seed=0"], status=JobStatus.COMPLETED, _return_value=None)
    jobs = [_Job("5_0", error=RuntimeError("has not produced any output")), _Job("5_1", result=ok)]
    launcher, ex, reports = _launcher(tmp_path, jobs, monkeypatch)
    returns = launcher.launch([["seed=1"], ["seed=0"]], initial_job_idx=4)
    assert ex.submitted[0] is launcher and [a[:4] for a in ex.submitted[1]] == [
        (["seed=1"], "hydra.sweep.dir", 4, "job_id_for_4"),
        (["seed=0"], "hydra.sweep.dir", 5, "job_id_for_5"),
    ]
    assert returns[1] is ok and returns[0].status == JobStatus.FAILED
    assert str(_private.job_error(returns[0])).startswith("cell #4 (seed=1) SLURM job 5_0 ended without a result")
    assert len(reports) == 1 and (tmp_path / "sweep").is_dir()


def test_launch_leaves_the_report_to_hydra_when_every_cell_completed(tmp_path, monkeypatch):
    ok = JobReturn(overrides=[], status=JobStatus.COMPLETED, _return_value=None)
    launcher, _, reports = _launcher(tmp_path, [_Job("6_0", result=ok)], monkeypatch)
    assert launcher.launch([[]], initial_job_idx=0) == [ok] and reports == []


def test_launch_cancels_a_hopeless_array_and_reports_the_cells_that_finished(tmp_path, monkeypatch):
    calls = []
    squeue = "5_[1-2]|PENDING|debug|PartitionConfig\n"
    monkeypatch.setattr(_pending, "slurm", lambda *a: calls.append(a) or {"squeue": squeue}.get(a[0], ""))
    ok = JobReturn(overrides=["seed=0"], status=JobStatus.COMPLETED, _return_value=None)
    finished = _Job("5_0", result=ok)
    finished.paths.result_pickle = tmp_path / "5_0_result.pkl"
    finished.paths.result_pickle.write_bytes(b"")
    jobs = [finished, _Job("5_1", done=False), _Job("5_2", done=False)]
    launcher, _, reports = _launcher(tmp_path, jobs, monkeypatch, cpus_per_task=64, pending_timeout_min=None)
    with pytest.raises(PendingError) as e:
        launcher.launch([["seed=0"], ["seed=1"], ["seed=2"]], initial_job_idx=0)
    assert str(e.value) == (
        "hydra.launcher (cpus_per_task=64): job 5_[1-2] can never start (PartitionConfig) in partition debug; "
        "the array was cancelled"
    )
    assert ("scancel", "5") in calls and len(reports) == 1  # the finished cell is reported, the others missing
    jobs = [_Job("6_0", done=False)]
    launcher, _, reports = _launcher(tmp_path, jobs, monkeypatch, cpus_per_task=64)
    with pytest.raises(PendingError):
        launcher.launch([["seed=0"]], initial_job_idx=0)
    assert reports == []  # nothing finished: no report


def test_a_request_the_scheduler_rejects_fails_in_one_line(tmp_path, monkeypatch):
    from submitit.core.utils import FailedJobError

    stderr = "sbatch: error: Memory specification can not be satisfied\nsbatch: error: Batch job submission failed"
    launcher, _, reports = _launcher(tmp_path, [], monkeypatch, error=FailedJobError(stderr), mem_gb=4096)
    with pytest.raises(PendingError) as e:
        launcher.launch([["seed=0"]], initial_job_idx=0)
    assert str(e.value) == (
        "hydra.launcher (mem_gb=4096): slurm rejected the array: Memory specification can not be satisfied; "
        "Batch job submission failed"
    )
    assert reports == []


# --- a real sweep over submitit's local executor ---

APP = """
import os, signal
from pathlib import Path

from hydra.experimental.callback import Callback


class Report(Callback):
    def on_multirun_end(self, config, **kwargs):
        with open(Path(config.hydra.sweep.dir) / "report.txt", "a") as f:
            f.write("report\\n")


def task(cfg):
    if cfg.x == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # no exception, no result: as the OOM killer would
    Path("done").write_text(str(cfg.x))
"""
CONFIG = """
defaults:
  - override hydra/launcher: submitit_local
  - _self_
x: 0
hydra:
  sweep: {dir: sweep, subdir: "${hydra.job.num}"}
  job: {chdir: true}
  launcher: {_target_: hydra_plugins.landscape_sweep_launchers.LocalLauncher, timeout_min: 5}
  callbacks: {report: {_target_: tinyapp.Report}}
"""
MAIN = """
from pathlib import Path

import hydra
from tinyapp import task

hydra.main(version_base="1.3", config_path=str(Path(__file__).parent / "conf"), config_name="config")(task)()
"""


@pytest.mark.slow
def test_a_killed_local_cell_is_reported_and_fails_the_sweep(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(textwrap.dedent(CONFIG))
    (tmp_path / "tinyapp.py").write_text(textwrap.dedent(APP))
    (tmp_path / "main.py").write_text(textwrap.dedent(MAIN))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(
        [sys.executable, "main.py", "-m", "x=0,1,2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-4000:]
    assert "cell #1 (x=1) SLURM job " in out and " ended without a result (state " in out, out[-4000:]
    sweep = tmp_path / "sweep"
    assert [(sweep / str(i) / "done").read_text() for i in (0, 2)] == ["0", "2"]
    assert not (sweep / "1" / "done").exists()
    assert (sweep / "report.txt").read_text() == "report\n"  # once: by the launcher, Hydra skips its own

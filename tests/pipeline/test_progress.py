"""Progress output: one `[k/N]` line per finished cell with its measures and an ETA (Hydra callback), Lightning's
bar on a terminal or one line per epoch elsewhere (training/progress.py), none when progress is off."""

from __future__ import annotations

import io
import json
import re
import threading
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from landscape_sweep.pipeline import progress
from landscape_sweep.training.module import LitClassifier
from landscape_sweep.training.progress import EpochLines, progress_callbacks
from tests._support.cli import QUICK
from tests._support.sweep import completed

EPOCH_LINE = re.compile(r"^seed (\d) epoch (\d+)/(\d+) loss \S+ acc \S+ \d+\.\d s$")
CELL_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\w+)  (.+)  \((\d+ (?:s|min)); ETA (\d+ (?:s|min))\)$")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fit(callbacks: list[pl.Callback], enable_progress_bar: bool = True) -> pl.Trainer:
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    data = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    module = LitClassifier(model, {"lr": 0.1}, max_epochs=3, steps_per_epoch=4, log_prefix="seed0/")
    trainer = pl.Trainer(
        max_epochs=3, logger=False, enable_checkpointing=False, enable_model_summary=False, accelerator="cpu",
        callbacks=callbacks, enable_progress_bar=enable_progress_bar,
    )  # fmt: skip
    trainer.fit(module, data)
    return trainer


def test_epoch_lines_replace_the_bar_under_non_interactive_output():
    out = io.StringIO()
    (cb,) = progress_callbacks({"enable_progress_bar": True}, 0, stream=out)
    trainer = _fit([cb])
    assert trainer.progress_bar_callback is cb  # Lightning's TQDM bar is not added
    lines = out.getvalue().splitlines()
    assert [EPOCH_LINE.match(line).groups() for line in lines] == [("0", str(e), "3") for e in (1, 2, 3)]


def test_terminal_gets_the_lightning_bar_and_off_means_off():
    assert progress_callbacks({"enable_progress_bar": True}, 0, stream=Tty()) == []
    assert progress_callbacks({"enable_progress_bar": False}, 0, stream=io.StringIO()) == []
    trainer = _fit(progress_callbacks({"enable_progress_bar": False}, 0), enable_progress_bar=False)
    assert trainer.progress_bar_callback is None
    assert isinstance(progress_callbacks({}, 1, stream=io.StringIO())[0], EpochLines)


def test_sweep_size_counts_the_grid():
    grid = {"model.depth": "1,2,4", "model.width": "16,64,256", "optimizer": "sgd,sam"}
    assert progress.sweep_size(grid, []) == 18
    assert progress.sweep_size(grid, ["seed=0,1", "trainer.max_epochs=2"]) == 36
    assert progress.sweep_size({}, ["model.depth=1,2"]) == 2
    assert progress.sweep_size({}, ["optimizer=glob(*)"]) is None  # needs the config loader: N unknown


def _job(sweep: Path, num: int, record: dict | None) -> Path:
    job = sweep / str(num)
    job.mkdir(parents=True)
    if record is not None:
        (job / "results.json").write_text(json.dumps(record))
    return job


def test_cell_lines_count_measures_and_eta(tmp_path, monkeypatch):
    sweep, now = tmp_path / "sweep", [1000.0]
    monkeypatch.setattr(progress.time, "time", lambda: now[0])
    progress.start(sweep, 4)  # the sweep starts at t = 1000 s
    failed = {"schema": 2, "status": "failed", "error": "RuntimeError: out of memory", "cell": {}}
    jobs = [_job(sweep, 0, completed(1, 16, "sgd")), _job(sweep, 1, failed), _job(sweep, 2, None)]
    calls = [
        (jobs[0], 41.0, []),
        (jobs[1], 3.0, ["model.depth=4", "optimizer.lr=10"]),
        (jobs[2], 2.0, ["model.depth=8"]),
    ]
    lines = []
    for t, (job, seconds, over) in zip((1040.0, 1060.0, 1090.0), calls):  # ETA: elapsed / k * (N - k)
        now[0] = t
        lines.append(progress.finished_line(sweep, job, seconds, over))
    assert lines == [
        "[1/4] completed  mlp d=1 w=16 sgd  test_acc 0.89 ± 0  linear barrier 1 ± 0.12  (41 s; ETA 2 min)",  # ± se
        "[2/4] failed  model.depth=4 optimizer.lr=10  RuntimeError: out of memory  (3 s; ETA 1 min)",
        "[3/4] failed  model.depth=8  no results.json (the job raised before writing it)  (2 s; ETA 30 s)",
    ]


def test_simultaneous_cells_get_distinct_k(tmp_path):
    progress.start(tmp_path, 8)
    ks: list[int] = []
    threads = [threading.Thread(target=lambda: ks.append(progress.claim(tmp_path)[0])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ks) == list(range(1, 9))


def test_durations():
    assert [progress.duration(s) for s in (0.4, 41, 59.4, 61, 540, 3600, 7500)] == [
        "0 s", "41 s", "59 s", "1 min", "9 min", "1 h 00 min", "2 h 05 min",
    ]  # fmt: skip


def test_mini_study_keeps_progress_on(compose_cfg):
    assert compose_cfg(["experiment=mini_study"]).trainer.enable_progress_bar is True


@pytest.mark.slow  # a real 2-cell multirun through the CLI's main, in this process
def test_multirun_prints_a_line_per_cell_and_per_epoch(run_main, tmp_path):
    sweep = tmp_path / "sweep"
    fast = [o for o in QUICK if not o.startswith("trainer.enable_progress_bar")]  # progress on (the default)
    proc = run_main(["-m", "model.depth=1,2", f"hydra.sweep.dir={sweep}", *fast])
    cells = [CELL_LINE.match(line) for line in proc.stdout.splitlines() if re.match(r"\[\d+/", line)]
    assert len(cells) == 2 and all(cells), proc.stdout
    assert [(m.group(1), m.group(2), m.group(3)) for m in cells] == [("1", "2", "completed"), ("2", "2", "completed")]
    assert cells[0].group(4).startswith("mlp d=1 w=16 sgd  test_acc ") and " linear barrier " in cells[0].group(4)
    assert cells[1].group(4).startswith("mlp d=2 w=16 sgd  ") and cells[1].group(6) == "0 s"
    epochs = [EPOCH_LINE.match(line).groups() for line in proc.stderr.splitlines() if EPOCH_LINE.match(line)]
    assert epochs == [(s, e, "2") for _ in range(2) for s in "01" for e in "12"], proc.stderr  # 2 cells, 2 seeds


def test_a_cell_finishing_twice_is_counted_once_and_a_locked_cell_is_no_failure(tmp_path, monkeypatch):
    """Two identical sweeps into one dir (or a re-run of a cell): k never passes N; the process that found a cell
    locked says so, and does not count it."""
    sweep, now = tmp_path / "sweep", [1000.0]
    monkeypatch.setattr(progress.time, "time", lambda: now[0])
    progress.start(sweep, 2)
    jobs = [_job(sweep, 0, completed(1, 16, "sgd")), _job(sweep, 1, None)]
    now[0] = 1010.0
    lines = [progress.finished_line(sweep, jobs[0], 5.0, ["model.depth=1"], status="completed")]
    lines.append(progress.finished_line(sweep, jobs[1], 1.0, ["model.depth=2"], status="locked"))
    lines.append(progress.finished_line(sweep, jobs[0], 5.0, ["model.depth=1"]))  # the twin sweep's copy
    (jobs[1] / "results.json").write_text(json.dumps(completed(2, 16, "sgd")))
    lines.append(progress.finished_line(sweep, jobs[1], 9.0, ["model.depth=2"]))
    assert [line.split("  ")[0] for line in lines] == [
        "[1/2] completed",
        "[1/2] locked",
        "[1/2] completed",
        "[2/2] completed",
    ]
    assert "skipped: another process runs this cell (lock held by a process that has since finished)" in lines[1]


def test_the_callback_passes_the_cell_status_to_the_line(tmp_path, capsys):
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from landscape_sweep.pipeline.hydra_callbacks import SweepProgress

    sweep = tmp_path / "sweep"
    progress.start(sweep, 1)
    job = _job(sweep, 0, None)
    config = OmegaConf.create({"hydra": {"mode": RunMode.MULTIRUN, "sweep": {"dir": str(sweep)},
                                         "runtime": {"output_dir": str(job)}}})  # fmt: skip
    ret = JobReturn(overrides=["model.depth=1"], status=JobStatus.COMPLETED, _return_value="locked")
    SweepProgress().on_job_end(config, ret)
    assert capsys.readouterr().out.startswith("[0/1] locked  model.depth=1  skipped: another process runs this cell")

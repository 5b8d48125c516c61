"""`python -m landscape_sweep.report`: exit codes, printed table, --wandb offline run holding the table.

The CLI's `main(argv)` runs in this process (`run_in_process`: the same argv, exit code and output, without a new
interpreter's ~3 s of imports); one bad-dir case goes through a real `python -m` process, the entry point itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests._support.cli import run_in_process
from tests._support.sweep import INVALID, add_invalid
from tests._support.wandb_offline import offline_runs, read_run


def run(args: list[str], cwd) -> subprocess.CompletedProcess:
    """The report CLI's main(argv) in this process, from `cwd`, W&B offline."""
    return run_in_process(args, cwd, module="landscape_sweep.report")


def run_process(args: list[str], cwd) -> subprocess.CompletedProcess:
    """`python -m landscape_sweep.report args` as a real process."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run(
        [sys.executable, "-m", "landscape_sweep.report", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.slow  # renders every figure
def test_cli_prints_table(sweep):
    proc = run([str(sweep)], sweep.parent)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:6] == ["job", "status", "arch", "depth", "width", "optimizer"]
    assert lines[1].split()[:7] == ["0", "completed", "mlp", "1", "16", "sgd", "800"]
    assert any(line.split()[:2] == ["8", "failed"] for line in lines)
    assert f"report: {sweep / 'report.md'}" in lines
    assert (sweep / "sweep_results.csv").is_file() and not offline_runs(sweep)


@pytest.mark.slow  # renders every figure
def test_cli_lists_invalid_results_and_builds_the_rest(sweep):
    """A truncated results.json, one of schema 99 and one with `endpoints: "x"`: exit 0, each listed as invalid
    with its reason (table, printed lines, report.md), every other row as before."""
    add_invalid(sweep)
    proc = run([str(sweep)], sweep.parent)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for job, (_, reason) in INVALID.items():
        assert any(line.split()[:2] == [job, "invalid"] for line in lines)
        assert f"{job}: invalid: {reason} (overrides: seed={job} trainer.max_epochs=30)" in lines
    assert "10: missing: no results.json (job killed, timed out or still running) (overrides: model.depth=8 " \
        "optimizer=sgd trainer.max_epochs=30)" in lines  # fmt: skip
    assert lines[1].split()[:7] == ["0", "completed", "mlp", "1", "16", "sgd", "800"]
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert list(table.status) == ["completed"] * 8 + ["failed", "diverged", "missing"] + ["invalid"] * 3
    assert table.loc[0, "gen_gap_mean"] == pytest.approx(0.10)
    report = (sweep / "report.md").read_text()
    assert "| invalid | 3 |" in report and "**invalid** (overrides: `seed=12`): schema=99: unknown" in report


@pytest.mark.parametrize("make", [False, True])
def test_cli_bad_dir(tmp_path, make):
    target = tmp_path / "nope"
    if make:
        target.mkdir()  # exists but holds no job
    proc = (run if make else run_process)([str(target)], tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "sweep_dir=" in proc.stderr


@pytest.mark.slow
def test_cli_wandb_offline_run(sweep):
    proc = run([str(sweep), "--wandb"], sweep.parent)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = offline_runs(sweep)
    rec = read_run(run_dir)
    assert rec["run"]["job_type"] == "report" and rec["run"]["group"] == "sweep"
    assert rec["run"]["project"] == "fake_proj" and rec["exit_code"] == 0
    (row,) = rec["history"]
    assert row["sweep_results/_type"] == "table-file" and row["sweep_results/nrows"] == 11
    assert row["kendall_tau/nrows"] == 7 and row["figures/curves_p1/_type"] == "image-file"
    assert rec["summary"]["cells/completed"] == 8 and rec["summary"]["cells/missing"] == 1
    table = json.loads((run_dir / "files" / row["sweep_results/path"]).read_text())
    cols = table["columns"]
    assert cols[:3] == ["job", "status", "error"] and "linear/loss_barrier_mean" in cols
    first = dict(zip(cols, table["data"][0]))
    assert first["optimizer"] == "sgd" and first["gen_gap_mean"] == pytest.approx(0.10)
    assert dict(zip(cols, table["data"][10]))["status"] == "missing"


def test_cli_facet_and_select_options(sweep):
    """report.select draws only the chosen cells (the table keeps all); bad options fail in one line, exit 2."""
    from landscape_sweep.report.__main__ import main

    assert main([str(sweep), "report.select=optimizer=sam", "report.facet=depth"]) == 0
    text = (sweep / "report.md").read_text()
    assert "only cells with optimizer in {sam}" in text and "split by depth" in text
    assert len(pd.read_csv(sweep / "sweep_results.csv")) == 11
    pages = sorted(p.name for p in (sweep / "figures").glob("curves_p*.png"))
    assert pages == ["curves_p1.png", "curves_p2.png", "curves_p3.png"]  # sam only, one page per depth


@pytest.mark.parametrize(
    "option,expected",
    [
        ("report.colour=red", "option='report.colour=red': must be report.facet=KEY[,KEY], report.select="),
        ("report.select=optimizer.wd=0", "report.select='optimizer.wd': is not a cell field or a config key"),
    ],
)
def test_cli_bad_options_one_line(sweep, capsys, option, expected):
    from landscape_sweep.report.__main__ import main

    assert main([str(sweep), option]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err

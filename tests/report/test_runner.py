"""The report's runner on any sweep dir (issue 25, point 10): a read-only sweep dir gets nothing written (or the
report goes to `--out`), its figure workers die with it, a re-report removes the figures it no longer draws, and
facets on config keys the cells share work."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from landscape_sweep.report import build_report
from landscape_sweep.report.__main__ import main
from tests._support.cli import REPO

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG")


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` read-only for this process: chmod for a normal user; for root (who ignores permission bits) a
    read-only bind mount, skipped where mounting is not allowed."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if p.is_dir()}
        for p in modes:
            p.chmod(0o555)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    mount = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"root without a read-only bind mount: {mount.stderr.decode().strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True)
        if ro.returncode != 0:
            pytest.skip(f"no read-only remount: {ro.stderr.decode().strip()}")
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_sweep_dir_gets_nothing_written_and_one_line(sweep, capsys):
    before = _listing(sweep)
    with read_only(sweep):
        assert main([str(sweep)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith(f"landscape_sweep.report: sweep_dir={str(sweep)!r} cannot be ")
    assert "nothing written" in err and "--out DIR" in err
    assert out.splitlines()[0].split()[:3] == ["job", "status", "arch"]  # the table is still printed
    assert _listing(sweep) == before


def test_out_writes_the_report_elsewhere_and_the_sweep_dir_is_only_read(sweep, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "report"
    with read_only(sweep):
        assert main([str(sweep), "--out", str(out), "report.facet=depth"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"report written to {out} (the sweep dir {sweep} was only read)"
    text = (out / "report.md").read_text()
    assert text.startswith(f"# Sweep report: {sweep.name}\n") and f"Sweep directory: `{sweep.resolve()}`" in text
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert links and all((out / link).is_file() for link in links)
    assert (out / "sweep_results.csv").is_file() and not (sweep / "report.md").exists()


def test_an_unwritable_out_dir_fails_in_one_line(sweep, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main([str(sweep), "--out", str(tmp_path / "file" / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out=" in err and "cannot be written" in err and "nothing written" in err


def test_a_sweep_dir_name_too_long_fails_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path / ("x" * 300))]) == 2
    assert capsys.readouterr().err.endswith("not a readable directory (File name too long)\n")


def test_a_re_report_removes_only_the_figures_it_no_longer_draws(sweep):
    first = build_report(sweep, options={"facet": ["depth"]}, workers=1)
    figures = sweep / "figures"
    stale = [figures / n for n in ("heatmap_gone.png", "trend_width_gone_p3.png", "curves_p9.png", "curves.md")]
    mine = [figures / n for n in ("notes.md", "my_plot.png", "heatmap_notes.txt")]  # not the report's own
    for p in stale + mine:
        p.write_text("x")
    second = build_report(sweep, workers=1)
    drawn = {Path(p) for k, p in second.items() if Path(p).parent == figures}
    assert {p for p in figures.iterdir()} == drawn | set(mine)
    assert {Path(p) for k, p in first.items() if Path(p).parent == figures} != drawn  # the facet changed the pages


def test_stale_csvs_of_an_earlier_report_are_removed(sweep):
    (sweep / "paired_optimizer.csv").write_text("stale\n")
    for job in sweep.iterdir():  # only sgd left: nothing to pair
        r = job / "results.json"
        if r.is_file() and '"sam"' in r.read_text():
            r.unlink()
    assert "paired_optimizer" not in build_report(sweep, workers=1)
    assert not (sweep / "paired_optimizer.csv").exists()


def test_a_facet_on_a_config_key_every_cell_shares_draws_one_panel(sweep):
    for job in sweep.iterdir():
        r = job / "results.json"
        if r.is_file():
            d = json.loads(r.read_text())
            d["config"] = {**d.get("config", {}), "optimizer": {"lr": 0.1}, "landscape": {"name": "fast"}}
            r.write_text(json.dumps(d))
    paths = build_report(sweep, options={"facet": ["optimizer.lr"], "select": {"optimizer.lr": 0.1}}, workers=1)
    assert "split by optimizer.lr" in Path(paths["report"]).read_text()
    with pytest.raises(ValueError, match=r"report.facet='landscape.name': is not a cell field"):
        build_report(sweep, options={"facet": ["landscape.name"]}, workers=1)  # analysis settings are no columns


# --- a killed report takes its figure workers along -------------------------------------------------------------
SLOW_REPORT = """
    import signal, sys, time
    from pathlib import Path
    from tests._support.sweep import make_sweep
    import landscape_sweep.report as report
    import landscape_sweep.report.figures as figures

    root, marks = make_sweep(Path(sys.argv[1])), Path(sys.argv[2])
    heatmap = figures.heatmap

    def slow(*args, **kwargs):  # each worker says who it is, then draws for a minute
        (marks / str(__import__("os").getpid())).write_text("")
        time.sleep(60)
        return heatmap(*args, **kwargs)

    figures.heatmap = slow
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal (a background job ignores it)
    report.build_report(root, workers=2)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@LINUX
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_killed_report_takes_its_figure_workers_along(sig, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SLOW_REPORT), str(tmp_path / "sweep"), str(marks)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            workers = [int(p.name) for p in marks.iterdir()]
        assert len(workers) == 2, proc.communicate(timeout=5)[0]
        proc.send_signal(sig)
        proc.wait(timeout=20)  # the report ends at once, not after its workers' minute
        deadline = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], f"figure workers outlived the report ({sig.name})"
        if sig is not signal.SIGKILL:
            assert proc.returncode == -sig or proc.returncode == 128 + sig, proc.returncode
    finally:
        for pid in [proc.pid, *workers]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)

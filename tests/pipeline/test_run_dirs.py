"""Nothing lost: runs started in the same millisecond get their own dirs, an existing job dir is never overwritten
by another config (only `landscape.*` may change there), and a BatchNorm cell whose last training batch would hold
one sample completes. Each through the real CLI: a CLI process beside a run in this process on one frozen instant,
the others in this process (`run_main`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime

import pytest
import torch

from landscape_sweep.data import TensorLoader
from landscape_sweep.pipeline import config
from landscape_sweep.pipeline.app import precheck
from landscape_sweep.pipeline.config import ConfigError
from tests._support import gate
from tests._support.cli import FAST, QUICK, check_completed, cli_env, only

pytestmark = pytest.mark.slow

STAMP = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d{3}_\d+")


def _without(*keys: str, base: list[str] = QUICK) -> list[str]:
    return [o for o in base if not o.startswith(keys)]


ONE_SEED = [*_without("endpoints.seeds", "model.width"), "endpoints.seeds=[0]"]  # no pairs: quick


def test_runs_started_in_the_same_millisecond_get_their_own_dirs(run_main, tmp_path, data_dir, monkeypatch):
    # a CLI process and a run in this process read one instant on the clock that names default run dirs
    when = datetime(2030, 1, 2, 3, 4, 5, 678000)
    env = gate.frozen_clock_env(cli_env(tmp_path), when)
    argv = [sys.executable, "-m", "landscape_sweep", *ONE_SEED, "model.width=16", f"paths.data_dir={data_dir}"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-4000:]
    monkeypatch.setattr(config, "datetime", gate.frozen(when))
    run_main([*ONE_SEED, "model.width=32"])
    runs = sorted((tmp_path / "logs" / "landscape_sweep" / "runs").iterdir())
    assert len(runs) == 2 and all(STAMP.fullmatch(r.name) for r in runs), runs
    assert {r.name.rsplit("_", 1)[0] for r in runs} == {"2030-01-02_03-04-05.678"}  # the same millisecond
    assert {int(r.name.rsplit("_", 1)[1]) for r in runs} == {proc.pid, os.getpid()}  # told apart by the process
    assert sorted(check_completed(r)["cell"]["width"] for r in runs) == [16, 32]


def test_a_changed_grid_never_overwrites_completed_cells(run_main, tmp_path, data_dir, monkeypatch):
    sweep = tmp_path / "sweep"
    base = ["-m", f"hydra.sweep.dir={sweep}", *ONE_SEED]
    run_main([*base, "model.width=16,32"])
    before = (sweep / "1" / "results.json").read_bytes()
    assert json.loads(before)["cell"]["width"] == 32

    proc = run_main([*base, "model.width=16,24,32"], check=False)
    assert proc.returncode == 2, proc.stderr
    line = only(ln for ln in proc.stderr.splitlines() if ln.strip())
    assert f"hydra.sweep.dir='{sweep}'" in line and f"job dir {sweep / '1'} " in line, line
    assert "model.width: 32 -> 24" in line and "landscape.*" in line, line
    assert (sweep / "1" / "results.json").read_bytes() == before and not (sweep / "2").exists()

    # a single run into a completed job dir with another training config is refused the same way
    monkeypatch.setenv("LANDSCAPE_SWEEP_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^hydra.run.dir=.*model.width: 16 -> 64"):
        precheck([f"hydra.run.dir={sweep / '0'}", *ONE_SEED, "model.width=64"])

    # only the analysis changes: the job dir is reused, the endpoints are not retrained
    final = sweep / "1" / "checkpoints" / "seed0" / "final.pt"
    mtime = final.stat().st_mtime_ns
    run_main([*base, "model.width=16,32", "landscape.sharpness.kinds=[worst]"])
    after = check_completed(sweep / "1")
    assert after["cell"]["width"] == 32 and after["config"]["landscape"]["sharpness"]["kinds"] == ["worst"]
    assert final.stat().st_mtime_ns == mtime


def test_batchnorm_cell_with_a_one_sample_last_batch_completes(run_main, tmp_path):
    x, y = torch.zeros(257, 1), torch.arange(257)
    batches = [len(b) for _, b in TensorLoader(x, y, batch_size=128, shuffle=True)]
    assert batches == [128, 129]  # the 1-sample remainder joins the batch before it: nothing dropped
    job = tmp_path / "job"
    args = [*_without("data.train_size", base=FAST), "data.train_size=257", "model.norm=batchnorm"]
    run_main([*args, f"hydra.run.dir={job}"])  # two endpoints: trained, BN recomputed along paths, curves fitted
    assert check_completed(job)["cell"]["train_size"] == 257


def test_cells_that_map_to_one_job_dir_are_refused_before_anything_runs(run_main, tmp_path):
    """`hydra.sweep.subdir` that does not tell the cells apart would make them overwrite each other."""
    sweep = tmp_path / "sweep"
    args = ["-m", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=w${model.width}", "model.depth=1,2",
            "model.width=8,16", *ONE_SEED]  # fmt: skip
    with pytest.raises(ConfigError) as err:
        precheck(args)
    msg = str(err.value)
    assert "\n" not in msg and f"job dir {sweep / 'w8'} " in msg, msg
    assert "#0 (model.depth=1 model.width=8)" in msg and "#2 (model.depth=2 model.width=8)" in msg, msg
    proc = run_main(args, check=False)
    assert proc.returncode == 2 and not sweep.exists(), proc.stderr
    assert only(ln for ln in proc.stderr.splitlines() if ln.strip()).startswith("landscape_sweep: config error: ")

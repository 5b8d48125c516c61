"""multirun_examples/: every ready sweep says what it studies and costs, and every one of its cells composes and
validates (the CLI's precheck, nothing is run)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from landscape_sweep.pipeline.app import cell_overrides, precheck
from landscape_sweep.pipeline.config import CONF_DIR
from tests._support.cli import REPO

EXAMPLES = REPO / "multirun_examples"
SCRIPTS = sorted(EXAMPLES.glob("*.sh"))
# the studies the README promises, with their cell counts
CELLS = {
    "mini_study.sh": 18,
    "joblib_local.sh": 10,
    "overparam_noise.sh": 16,
    "cifar10_resnet_slurm.sh": 27,
    "cifar10_wrn_width_slurm.sh": 5,
    "width_mnist1d.sh": 4,
}


def command(script: Path) -> list[str]:
    """The `python -m landscape_sweep ...` arguments of a script (continuations joined, `$VAR` expanded)."""
    text = script.read_text().replace("\\\n", " ")
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("python -m landscape_sweep ")]
    assert len(lines) == 1, f"{script.name}: expected one `python -m landscape_sweep` line"
    env = {**os.environ, "N_JOBS": "2"}
    args = shlex.split(lines[0])[3:]
    return [re.sub(r"\$(\w+)", lambda m: env[m.group(1)], a) for a in args if a != "$@"]


def test_every_example_is_listed():
    assert {s.name for s in SCRIPTS} == set(CELLS)
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in CELLS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_header_and_cells(script, tmp_path, monkeypatch):
    header = [ln for ln in script.read_text().splitlines()[1:] if ln.startswith("#")]
    assert len(header) >= 3 and any(ln.startswith("# Cost") for ln in header), f"{script.name}: header"
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    argv = command(script)
    assert argv[0] == "-m"
    monkeypatch.setenv("LANDSCAPE_SWEEP_ROOT", str(tmp_path))
    multirun, cells = cell_overrides(argv)
    assert multirun and len(cells) == CELLS[script.name]
    precheck(argv)  # composes and validates every cell; raises ConfigError naming the key otherwise
    assert not (tmp_path / "logs").exists(), "a precheck must not create the sweep"


def test_experiment_configs_have_headers():
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        lines = path.read_text().splitlines()
        assert lines[0] == "# @package _global_", path.name
        assert any(ln.startswith("# Cost") for ln in lines), f"{path.name}: no cost line"


def _launch(argv: list[str]):
    """The composed config of the example's first cell."""
    first = cell_overrides(argv)[1][0]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="t"):
        return compose("config", overrides=first, return_hydra_config=True)


@pytest.mark.parametrize("name", ["cifar10_resnet_slurm.sh", "cifar10_wrn_width_slurm.sh"])
def test_gpu_examples_submit_one_gpu_slurm_tasks(name):
    cfg = _launch(command(EXAMPLES / name))
    assert cfg.hydra.launcher._target_ == "hydra_plugins.landscape_sweep_launchers.SlurmLauncher"
    assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.trainer.accelerator == "gpu"
    assert cfg.data.name == "cifar10" and cfg.hydra.launcher.max_num_timeout > 0


def test_wrn_example_measures_aligned_barriers():
    cfg = _launch(command(EXAMPLES / "cifar10_wrn_width_slurm.sh"))
    assert cfg.model.arch == "wide_resnet" and list(cfg.landscape.connectivity.methods) == ["linear", "linear_aligned"]
    assert len(cfg.endpoints.seeds) == 3


def test_joblib_example_runs_in_parallel_workers():
    cfg = _launch(command(EXAMPLES / "joblib_local.sh"))
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2


def test_the_width_study_spans_enough_widths_for_an_exponent():
    """The aligned barrier's decay with width needs >= 4 widths up to >= 1024 (the report fits no exponent on
    fewer), every endpoint at one training criterion, and the aligned and REPAIR paths."""
    cfg = _launch(command(EXAMPLES / "width_mnist1d.sh"))
    widths = [int(w) for w in str(cfg.hydra.sweeper.params["model.width"]).split(",")]
    assert len(widths) >= 4 and max(widths) >= 1024
    assert cfg.trainer.stop_at.train_loss is not None
    assert {"linear_aligned", "linear_aligned_repair"} <= set(cfg.landscape.connectivity.methods)

"""Shared fixtures: compose configs in-process, run the real CLI in this process or in a subprocess (helpers:
tests/_support)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.register_assert_rewrite("tests._support")  # detailed assert messages in the helpers, as in test modules

from tests._support.cli import cli_env, run_in_process  # noqa: E402 (after the rewrite hook)

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One dataset cache for the whole session (mnist1d is generated once)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def compose_cfg(data_dir):
    """Compose the real config tree with overrides, as Hydra would for one job."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from landscape_sweep.pipeline.config import CONF_DIR

    def _compose(overrides: list[str] | tuple[str, ...] = ()):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="test"):
            cfg = compose("config", overrides=[f"paths.data_dir={data_dir}", *overrides], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg

    return _compose


@pytest.fixture
def run_cli(tmp_path, data_dir):
    """Run `python -m <module> args` from tmp_path (outputs under tmp_path/logs); returns CompletedProcess."""

    def _run(
        args: list[str], module: str = "landscape_sweep", timeout: float = 600, check: bool = True, data: bool = True
    ) -> subprocess.CompletedProcess:
        extra = [f"paths.data_dir={data_dir}"] if data and module == "landscape_sweep" else []
        proc = subprocess.run(
            [sys.executable, "-m", module, *args, *extra],
            cwd=tmp_path,
            env=cli_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
            )
        return proc

    return _run


@pytest.fixture
def run_main(tmp_path, data_dir):
    """`run_cli` in this process (`tests._support.cli.run_in_process`): the CLI's `main(argv)` from tmp_path with
    the CLI's environment, its exit code and output in a CompletedProcess, without a new interpreter's imports."""

    def _run(
        args: list[str], module: str = "landscape_sweep", check: bool = True, data: bool = True, env=None
    ) -> subprocess.CompletedProcess:
        extra = [f"paths.data_dir={data_dir}"] if data and module == "landscape_sweep" else []
        proc = run_in_process([*args, *extra], tmp_path, module=module, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
            )
        return proc

    return _run


@pytest.fixture(scope="session")
def slurm_cluster():
    """One localhost SLURM cluster for every SLURM test of the session (tests/_support/slurm.py): started here when
    none answers (and stopped again at the end), the test skipped with the reason when it cannot start."""
    from tests._support import slurm

    started, why_not = slurm.start()
    if why_not is not None:
        pytest.skip(why_not)
    yield
    if started:
        slurm.stop()

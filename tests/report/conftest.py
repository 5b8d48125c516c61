"""Report fixtures: the synthetic sweep of tests/_support/sweep.py, raw and with its report built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._support.sweep import make_sweep


@pytest.fixture
def sweep(tmp_path) -> Path:
    return make_sweep(tmp_path / "sweep")


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The synthetic sweep with its report built once per session: (sweep dir, build_report's paths)."""
    from landscape_sweep.report import build_report

    root = make_sweep(tmp_path_factory.mktemp("built") / "sweep")
    return root, build_report(root)

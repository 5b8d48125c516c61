"""Cells whose endpoints never reached `trainer.stop_at`: listed apart, left out of the trends, τ and the paired
comparison by default; `report.unreached=include` puts them back. The option is validated like the others."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from landscape_sweep.report import build_report
from landscape_sweep.report.facets import Options
from tests._support.sweep import make_sweep


def _stop_at(root: Path, job: str, reached: list[bool], train_loss: float) -> None:
    path = root / job / "results.json"
    d = json.loads(path.read_text())
    for e, ok in zip(d["endpoints"], reached):
        e["stop"] = {"criterion": {"train_loss": 0.01}, "reached": ok, "epoch": 12 if ok else None}
        e["train_loss"], e["epochs"] = train_loss, 30
    path.write_text(json.dumps(d))


@pytest.fixture
def stopped(tmp_path) -> Path:
    """The synthetic sweep with `trainer.stop_at`: job 0 (sgd, depth 1, width 16) reached it with 1 of 3 endpoints,
    job 4 (its sam twin) with all three."""
    root = make_sweep(tmp_path / "s")
    _stop_at(root, "0", [True, False, False], 0.5)
    _stop_at(root, "4", [True, True, True], 0.01)
    return root


def test_unreached_cells_are_listed_apart_and_left_out(stopped):
    paths = build_report(stopped, workers=1)
    table = pd.read_csv(paths["table"])
    assert list(table.loc[[0, 4], "stop_reached"]) == [False, True] and pd.isna(table.loc[1, "stop_reached"])
    tau = pd.read_csv(paths["correlations"]).set_index("measure")
    assert tau.loc["hessian_top_eig", "n"] == 7  # 8 completed cells, job 0 left out
    trends = pd.read_csv(paths["trends"])
    group = trends[(trends["axis"] == "width") & (trends["optimizer"] == "sgd") & (trends["depth"] == 1)]
    assert set(group["n_cells"]) == {1}  # width 16 (job 0) left out of its group
    assert "linear/max_train_loss" in set(trends["measure"])  # the path's max loss is a trend measure
    plateau = table["linear/loss_barrier/width_plateau"]
    assert pd.isna(plateau[0]) and plateau[2] == "worsens"  # a cell left out of the trends has no trend
    paired = pd.read_csv(paths["paired_optimizer"]).set_index("measure")
    assert paired.loc["test_acc", "cell_pairs"] == 3  # the pair (0, 4) is gone
    text = Path(paths["report"]).read_text()
    sec = text.split("## Cells that never reached the stop criterion\n", 1)[1].split("\n## ", 1)[0]
    assert "Left out of the trends, τ and the paired comparison (`report.unreached=include` puts them back)" in sec
    assert "| 0 | 1 | 16 | sgd | 0.5 ± 0 (3) | 1 of 3 endpoints reached train_loss ≤ 0.01 (30 epochs) |" in sec
    assert "| 4 |" not in sec
    quality = text.split("## Quality of the estimates\n", 1)[1].split("\n## ", 1)[0]
    assert "never reached the `trainer.stop_at` criterion" in quality and "left out of the trends" in quality


def test_include_puts_them_back(stopped):
    paths = build_report(stopped, workers=1, options={"unreached": "include"})
    assert pd.read_csv(paths["correlations"]).set_index("measure").loc["hessian_top_eig", "n"] == 8
    assert pd.read_csv(paths["paired_optimizer"]).set_index("measure").loc["test_acc", "cell_pairs"] == 4
    text = Path(paths["report"]).read_text()
    assert "Included in the trends, τ and the paired comparison (`report.unreached=include`)." in text
    # job 0 trained to 0.5, job 4 to 0.01, the others 0.05: 50x, said in the quality section
    assert "mean endpoint train loss from 0.01 in `4` (depth 1, width 16, sam) to 0.5 in `0`" in text


@pytest.mark.parametrize("value", ["maybe", 1])
def test_the_option_is_validated_like_the_others(value):
    from landscape_sweep.pipeline.config import _validate_report

    with pytest.raises(ValueError, match=r"report.unreached=.*must be one of exclude, include"):
        _validate_report({"unreached": value})
    with pytest.raises(ValueError, match=r"report.unreached=.*must be one of exclude, include"):
        Options.from_config({"unreached": value})
    _validate_report({"unreached": "include"})
    assert Options.from_config({}).unreached == "exclude"


def test_the_option_reaches_the_cli_and_the_detached_report_job():
    from omegaconf import OmegaConf

    from hydra_plugins.landscape_sweep_launchers._detach import report_args
    from landscape_sweep.report.__main__ import parse_options

    assert parse_options(["report.unreached=include"]).unreached == "include"
    assert report_args(OmegaConf.create({"report": {"unreached": "include"}})) == ["report.unreached=include"]
    assert report_args(OmegaConf.create({"report": {"unreached": "exclude"}})) == []

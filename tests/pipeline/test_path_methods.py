"""The path-method registry (`results.PATH_METHODS`): every entry has a builder, and adding one method is one entry
plus its builder function — the pre-check, the analysis, the progress line, the dashboard and the report pick it up
(docs/architecture.md, "How to add a path method")."""

from __future__ import annotations

import copy

import pytest
import torch

from landscape_sweep import dashboard, results
from landscape_sweep.data import TensorLoader
from landscape_sweep.landscape.curves import CURVE_KINDS
from landscape_sweep.models import build_model
from landscape_sweep.pipeline import path_builders, progress
from landscape_sweep.pipeline.config import ConfigError, validate
from landscape_sweep.pipeline.measures import AnalysisData, pair_paths
from landscape_sweep.report.markdown import methods_doc
from landscape_sweep.results import PathMethod
from tests._support.sweep import completed, path_entry

METHODS = "landscape.connectivity.methods"


def test_every_method_has_a_builder_and_every_curve_a_kind():
    for name, method in results.PATH_METHODS.items():
        assert method.name == name
        assert callable(path_builders.builder(name)), name
        assert method.curve is None or method.curve in CURVE_KINDS, name
    assert {"bezier", "polychain"} <= set(results.curve_methods()) <= set(CURVE_KINDS)


def _toy_segment(a, b, m, ad, conn, seed):
    """The toy method: the segment from `a` to a copy of `b` whose weights are scaled by 1.5."""
    far = copy.deepcopy(b)
    with torch.no_grad():
        for p in far.parameters():
            p.mul_(1.5)
    return a, far


@pytest.fixture
def toy(monkeypatch):
    """A path method added as the recipe says: one registry entry plus its builder function."""
    monkeypatch.setitem(results.PATH_METHODS, "toy", PathMethod("toy", "toy_segment", label="toy path", note="a test"))
    monkeypatch.setattr(path_builders, "toy_segment", _toy_segment, raising=False)
    return results.PATH_METHODS["toy"]


def _tiny_data() -> AnalysisData:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
    loader = TensorLoader(x, y, batch_size=8)
    return AnalysisData(probe=loader, train=loader, test=loader, curve_train=loader)


def test_a_toy_method_is_checked_run_and_shown(toy, compose_cfg):
    c = validate(compose_cfg([f"{METHODS}=[linear,toy]"]))  # the pre-check accepts it
    assert c["landscape"]["connectivity"]["methods"] == ["linear", "toy"]

    torch.manual_seed(0)
    a, b = (build_model("mlp", (4,), 3, depth=1, width=4, norm="none") for _ in range(2))
    path = path_builders.fit_path(a, b, "toy", _tiny_data(), {}, 0)
    assert path[0] is a and torch.allclose(next(path[1].parameters()), 1.5 * next(b.parameters()))
    landscape = {"connectivity": {"methods": ["toy"], "num_points": 3, "sharpness_points": []},
                 "surface": {"enabled": False}}  # fmt: skip
    (entry,) = pair_paths(a, b, (0, 1), _tiny_data(), landscape, 0)  # evaluated like every other path
    assert entry.method == "toy" and len(entry.t) == 3 and entry.loss_barrier is not None

    record = completed(1, 16, "sgd")
    record["connectivity"] = [path_entry((0, 1), "toy", 0.5)]
    assert "toy path barrier 0.5" in progress.measures_text(results.CellResult.from_dict(record))
    keys = {f"landscape/{m}/loss_barrier" for m in ("zzz", "toy", "linear")}
    (barriers,) = [items for title, items in dashboard.metric_sections(keys)[0] if title == "Barriers"]
    assert [label for _, label in barriers] == ["linear loss barrier", "toy path loss barrier", "zzz loss barrier"]
    assert methods_doc().endswith("`polychain`, `toy` (a test)")


def _one_line_error(compose_cfg, overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(overrides))
    assert "\n" not in str(err.value)
    return str(err.value)


def test_an_unknown_method_is_refused_in_one_line(compose_cfg):
    msg = _one_line_error(compose_cfg, [f"{METHODS}=[linear,teleport]"])
    assert msg.startswith(f"{METHODS}=['linear', 'teleport']") and "linear, linear_aligned" in msg


def test_a_method_without_a_builder_is_refused_before_training(monkeypatch, compose_cfg):
    monkeypatch.setitem(results.PATH_METHODS, "ghost", PathMethod("ghost", "no_such_builder"))
    msg = _one_line_error(compose_cfg, [f"{METHODS}=[ghost]"])
    assert "no_such_builder" in msg and "pipeline/path_builders.py" in msg


def test_an_aligning_method_needs_a_permutation_spec(monkeypatch, compose_cfg):
    from landscape_sweep.models import MODELS

    monkeypatch.setitem(MODELS, "mlp", type("NoSpec", (torch.nn.Module,), {}))  # a family without weight matching
    msg = _one_line_error(compose_cfg, [f"{METHODS}=[linear_aligned]"])
    assert msg.startswith(f"{METHODS}='linear_aligned'") and "permutation_spec" in msg
    validate(compose_cfg([f"{METHODS}=[linear,bezier]"]))  # methods that do not align are still allowed

import copy

import pytest
import torch
from torch import nn

from landscape_sweep.landscape import evaluate, loss_surface, plane_surface, recompute_bn
from landscape_sweep.landscape.surface import random_direction


def model(seed: int, bn: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    norm = [nn.BatchNorm1d(8)] if bn else []
    return nn.Sequential(nn.Linear(6, 8), *norm, nn.ReLU(), nn.Linear(8, 3)).double()


def data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def shifted(m: nn.Module, steps: list[tuple[float, dict]]) -> nn.Module:
    out = copy.deepcopy(m)
    with torch.no_grad():
        for name, p in out.named_parameters():
            for a, d in steps:
                p.add_(a * d.get(name, torch.zeros_like(p)))
    return out.eval()


def test_filter_normalised_direction():
    m = model(0)
    d = random_direction(m, "filter", torch.Generator().manual_seed(0))
    torch.testing.assert_close(d["0.weight"].norm(dim=1), m[0].weight.detach().norm(dim=1))
    assert torch.equal(d["0.bias"], torch.zeros(8, dtype=torch.float64))
    with pytest.raises(ValueError, match="^normalization='batch': must be one of filter, layer, none$"):
        random_direction(m, "batch")


def test_line_matches_direct_evaluation_and_model_unchanged():
    m, d = model(0), data()
    m.train()
    before = copy.deepcopy(m.state_dict())
    res = loss_surface(m, d, dims=1, num_points=5, span=(-0.5, 0.5), seed=3)
    direction = random_direction(m, "filter", torch.Generator().manual_seed(3))
    for a, loss, acc in zip(res["x"], res["loss"], res["acc"]):
        assert (loss, acc) == pytest.approx(evaluate(shifted(m, [(a, direction)]), d), abs=1e-10)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items()) and m.training


def test_grid_with_given_directions_and_bn_recompute():
    m, d = model(0, bn=True), data()
    d1 = {n: torch.randn_like(p) for n, p in m.named_parameters()}
    d2 = {"0.weight": torch.randn_like(m[0].weight)}
    res = loss_surface(m, d, dims=2, directions=[d1, d2], num_points=3, bn_data=d, vectorize=True)
    assert len(res["loss"]) == 3 and len(res["loss"][0]) == 3
    i, j = 0, 2
    ref = recompute_bn(shifted(m, [(res["x"][i], d1), (res["y"][j], d2)]), d)
    assert res["loss"][i][j] == pytest.approx(evaluate(ref.eval(), d)[0], abs=1e-10)
    fixed = loss_surface(m, d, dims=1, directions=[d1], num_points=3)  # BN stats of the model kept
    assert fixed["loss"][1] == pytest.approx(evaluate(copy.deepcopy(m).eval(), d)[0], abs=1e-12)


def test_plane_through_three_models():
    a, b, c, d = model(0), model(1), model(2), data()
    res = plane_surface(a, b, c, d, num_points=4, margin=0.1)
    flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    (xa, ya), (xb, yb), (xc, yc) = res["models_xy"]
    assert (xa, ya, yb) == (0.0, 0.0, 0.0)
    assert xb == pytest.approx(float((flat(b) - flat(a)).norm()))
    assert (xc**2 + yc**2) ** 0.5 == pytest.approx(float((flat(c) - flat(a)).norm()))
    u = (flat(b) - flat(a)) / xb
    v = (flat(c) - flat(a) - xc * u) / yc
    x, y = res["x"][1], res["y"][2]
    ref = copy.deepcopy(a)
    torch.nn.utils.vector_to_parameters(flat(a) + x * u + y * v, ref.parameters())
    assert res["loss"][1][2] == pytest.approx(evaluate(ref.eval(), d)[0], abs=1e-10)


def test_bad_input():
    m, d = model(0), data()
    with pytest.raises(ValueError, match="^dims=3: must be one of 1, 2$"):
        loss_surface(m, d, dims=3)
    with pytest.raises(ValueError, match="^num_points=1: must be an integer >= 2$"):
        loss_surface(m, d, num_points=1)
    with pytest.raises(ValueError, match=r"^len\(directions\)=1: must equal dims=2"):
        loss_surface(m, d, dims=2, directions=[{}])
    with pytest.raises(ValueError, match="bn_data"):
        plane_surface(model(0, True), model(1, True), model(2, True), d)
    with pytest.raises(ValueError, match="model_c"):
        plane_surface(m, model(1), m, d)

import copy
import math

import pytest
import torch
from torch import nn

from landscape_sweep.landscape import Curve, evaluate, evaluate_path, linear_path, recompute_bn
from landscape_sweep.landscape.paths import barrier, path_geometry


def mlp(seed: int, bn: bool) -> nn.Module:
    torch.manual_seed(seed)
    norm = [nn.BatchNorm1d(16)] if bn else []
    return nn.Sequential(nn.Linear(10, 16), *norm, nn.ReLU(), nn.Linear(16, 4))


def cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(1, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10, 4)
    )


def loader(n: int, seed: int, conv: bool = False) -> list:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *((1, 10) if conv else (10,)), generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, n, 32)]  # uneven last batch


def naive(curve: Curve, ts: list[float], data, bn_data) -> tuple[list[float], list[float]]:
    """Reference: per point deepcopy, load the point's weights, recompute BN, evaluate."""
    losses, accs = [], []
    for t in ts:
        m = copy.deepcopy(curve.model)
        point = (curve.coefficients([t]) @ curve.controls())[0]
        sd, i = m.state_dict(), 0
        for k, shape in curve.names:
            n = math.prod(shape)
            sd[k] = point[i : i + n].view(shape)
            i += n
        m.load_state_dict(sd)
        if bn_data is not None:
            recompute_bn(m, bn_data)
        loss, acc = evaluate(m.eval(), data)
        losses.append(loss)
        accs.append(acc)
    return losses, accs


@pytest.mark.parametrize("make", [lambda s: mlp(s, True), lambda s: mlp(s, False), cnn], ids=["bn", "nobn", "cnn"])
@pytest.mark.parametrize("kind", ["linear", "bezier"])
@pytest.mark.parametrize("vectorize", [True, False])
def test_path_equals_naive_loop(make, kind, vectorize):
    a, b = make(0), make(1)
    conv = isinstance(a[0], nn.Conv1d)
    train, test = loader(100, 0, conv), loader(70, 1, conv)
    if kind == "linear":
        curve = Curve(a, b, "polychain", 0)
    else:
        curve = Curve(a, b, "bezier", 2)
        with torch.no_grad():
            curve.bends.add_(0.3 * torch.randn_like(curve.bends))
    bn = train if any(isinstance(m, nn.BatchNorm1d) for m in a.modules()) else None
    res = evaluate_path(curve, train, test, num_points=7, vectorize=vectorize)
    for prefix, data in (("train", train), ("test", test)):
        loss, acc = naive(curve, res["t"], data, bn)
        assert max(abs(u - v) for u, v in zip(res[f"{prefix}_loss"], loss)) < 1e-5
        assert res[f"{prefix}_acc"] == pytest.approx(acc, abs=1e-9)


def test_linear_path_contract_and_inputs_unchanged():
    a, b = mlp(0, True), mlp(1, True)
    b.eval()
    sa, sb = copy.deepcopy(a.state_dict()), copy.deepcopy(b.state_dict())
    res = linear_path(a, b, loader(64, 0), num_points=5)
    keys = {"t", "train_loss", "train_acc", "test_loss", "test_acc", "loss_barrier", "error_barrier"}
    keys |= {"test_loss_barrier", "test_error_barrier", "loss_barrier_mean", "error_barrier_mean"}
    keys |= {"path_length", "endpoint_distance", "path_curvature", "arc_chord_ratio"}
    assert keys <= res.keys() and res["test_loss"] is None and res["t"] == [0, 0.25, 0.5, 0.75, 1]
    dist = float(torch.cat([(p - q).flatten() for p, q in zip(a.parameters(), b.parameters())]).detach().norm())
    assert res["endpoint_distance"] == pytest.approx(dist, rel=1e-6)
    assert res["path_length"] == pytest.approx(res["endpoint_distance"], rel=1e-9)
    assert res["path_curvature"] < 1e-6 and res["arc_chord_ratio"] == pytest.approx(1, abs=1e-9)
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in sa.items()) and a.training
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in sb.items()) and not b.training


def test_barriers_exact():
    t, v = [0.0, 0.5, 1.0], [1.0, 3.0, 2.0]
    assert barrier(t, v) == 1.5  # 3 - (0.5 * 1 + 0.5 * 2)
    assert barrier(t, v, "mean") == 1.5
    assert barrier([0, 0.25, 1], [0.0, 1.0, 4.0]) == 0.0  # below the chord
    assert barrier([0, 0.25, 1], [0.0, 1.0, 4.0], "mean") == 2.0


def test_geometry_of_a_bent_polyline():
    controls = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    coeffs = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    g = path_geometry(coeffs, controls)
    assert g["path_length"] == pytest.approx(2 * math.sqrt(2))
    assert g["endpoint_distance"] == pytest.approx(2.0)
    assert g["path_curvature"] == pytest.approx(math.pi / 2)
    assert g["arc_chord_ratio"] == pytest.approx(math.sqrt(2))


def test_bad_input():
    a = mlp(0, False)
    with pytest.raises(ValueError, match="^num_points=1: must be an integer >= 2$"):
        linear_path(a, mlp(1, False), loader(32, 0), num_points=1)
    with pytest.raises(ValueError, match="model_b"):
        linear_path(a, nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 4)), loader(32, 0))
    with pytest.raises(ValueError, match="^path=<class 'torch.nn.modules.container.Sequential'>: must be a Curve"):
        evaluate_path(a, loader(32, 0))
    with pytest.raises(ValueError, match="^kind='max': must be one of linear, mean$"):
        barrier([0.0, 1.0], [1.0, 1.0], kind="max")


@pytest.mark.parametrize("vectorize", [True, False])
def test_ood_sets_are_evaluated_at_the_same_points_with_the_same_bn_statistics(vectorize):
    a, b = mlp(0, True), mlp(1, True)
    train, test, shifted = loader(100, 0), loader(70, 1), loader(50, 2)
    out = evaluate_path((a, b), train, test, num_points=5, vectorize=vectorize, ood_data={"same": test, "new": shifted})
    assert list(out["ood"]) == ["same", "new"]
    same = out["ood"]["same"]
    assert same["loss"] == pytest.approx(out["test_loss"], abs=1e-6) and same["acc"] == out["test_acc"]
    assert same["loss_barrier"] == pytest.approx(out["test_loss_barrier"], abs=1e-6)
    assert same["error_barrier"] == pytest.approx(out["test_error_barrier"], abs=1e-9)
    losses, accs = naive(Curve(a, b, "polychain", 0), out["t"], shifted, train)
    assert out["ood"]["new"]["loss"] == pytest.approx(losses, abs=1e-5) and out["ood"]["new"]["acc"] == accs
    assert "ood" not in evaluate_path((a, b), train, test, num_points=3)

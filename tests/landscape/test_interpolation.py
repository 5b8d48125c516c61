import copy

import pytest
import torch
from torch import nn

from landscape_sweep.landscape import evaluate, interpolate, recompute_bn


def bn_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).double()


def data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def snapshot(m: nn.Module) -> dict:
    return {k: v.clone() for k, v in m.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_recompute_bn_equals_full_data_batch_statistics():
    m, (x, y) = bn_mlp(0), data()
    m.train()
    recompute_bn(m, (x, y))
    h = m[0](x)
    torch.testing.assert_close(m[1].running_mean, h.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(m[1].running_var, h.var(0, unbiased=True), rtol=0, atol=1e-12)
    assert m.training and m[1].momentum == 0.1  # flags and momentum restored


def test_recompute_bn_averages_batches_weighted_by_size():
    m, (x, y) = bn_mlp(0), data(100)
    chunks = [(x[:64], y[:64]), (x[64:], y[64:])]
    recompute_bn(m, chunks)
    h = m[0](x)
    mean = (64 * h[:64].mean(0) + 36 * h[64:].mean(0)) / 100
    var = (64 * h[:64].var(0) + 36 * h[64:].var(0)) / 100
    torch.testing.assert_close(m[1].running_mean, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(m[1].running_var, var, rtol=0, atol=1e-12)


def test_interpolate_endpoints_reproduce_metrics_and_inputs_unchanged():
    a, b, d = bn_mlp(0), bn_mlp(1), data()
    for m in (a, b):
        recompute_bn(m, d)
    a.eval(), b.train()
    before_a, before_b = snapshot(a), snapshot(b)
    for t, ref in ((0.0, a), (1.0, b)):
        m = interpolate(a, b, t, bn_data=d)
        assert m is not ref
        ref_metrics = evaluate(copy.deepcopy(ref).eval(), d)
        assert evaluate(m.eval(), d) == pytest.approx(ref_metrics, abs=1e-12)
    assert same(before_a, snapshot(a)) and same(before_b, snapshot(b))
    assert not a.training and b.training


def test_interpolate_midpoint_weights_and_fresh_bn_stats():
    a, b, (x, y) = bn_mlp(0), bn_mlp(1), data()
    m = interpolate(a, b, 0.25, bn_data=(x, y))
    torch.testing.assert_close(m[0].weight, 0.75 * a[0].weight + 0.25 * b[0].weight)
    torch.testing.assert_close(m[1].running_mean, m[0](x).mean(0))


def test_interpolate_without_bn_needs_no_data():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    m = interpolate(a, b, 0.5)
    torch.testing.assert_close(m.bias, (a.bias + b.bias) / 2)


def test_bad_input():
    a = bn_mlp(0)
    with pytest.raises(ValueError, match="bn_data"):
        interpolate(a, bn_mlp(1), 0.5)
    with pytest.raises(ValueError, match="model_b"):
        interpolate(nn.Linear(3, 2), nn.Linear(3, 4), 0.5)
    with pytest.raises(ValueError, match="architecture"):
        interpolate(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2)), 0.5)

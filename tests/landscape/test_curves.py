import pytest
import torch
from torch import nn

from landscape_sweep.landscape import Curve, evaluate_path, fit_curve, linear_path
from landscape_sweep.landscape.curves import curve_coefficients


def mlp(seed: int, d_in: int = 5, width: int = 8, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, classes))


def test_bezier_coefficients_are_bernstein():
    t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    c = curve_coefficients(t, "bezier", 1)
    expected = [[1, 0, 0], [0.5625, 0.375, 0.0625], [0, 0, 1]]  # (1-t)^2, 2t(1-t), t^2
    torch.testing.assert_close(c, torch.tensor(expected, dtype=torch.float64))
    c3 = curve_coefficients(torch.linspace(0, 1, 9, dtype=torch.float64), "bezier", 3)
    torch.testing.assert_close(c3.sum(1), torch.ones(9, dtype=torch.float64))


def test_polychain_coefficients_are_hats_through_the_bends():
    t = torch.tensor([0.0, 1 / 6, 1 / 3, 0.5, 1.0], dtype=torch.float64)
    c = curve_coefficients(t, "polychain", 2)  # nodes at 0, 1/3, 2/3, 1
    expected = [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 1, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 1]]
    torch.testing.assert_close(c, torch.tensor(expected, dtype=torch.float64))


def test_bends_start_evenly_on_the_segment_and_forward_matches_model_at():
    a, b = mlp(0), mlp(1)
    curve = Curve(a, b, "bezier", 3)
    for k in range(3):
        torch.testing.assert_close(curve.bends[k], torch.lerp(curve.theta_a, curve.theta_b, (k + 1) / 4))
    x = torch.randn(4, 5)
    torch.testing.assert_close(curve(x, 0.3), curve.model_at(0.3)(x))
    torch.testing.assert_close(curve(x, 0.0), a(x))
    torch.testing.assert_close(curve.control_model(4)(x), b(x))


def test_bad_input():
    a, b = mlp(0), mlp(1)
    data = (torch.randn(8, 5), torch.randint(0, 3, (8,)))
    with pytest.raises(ValueError, match="num_bends"):
        fit_curve(a, b, data, num_bends=0)
    with pytest.raises(ValueError, match="kind"):
        fit_curve(a, b, data, kind="spline")
    with pytest.raises(ValueError, match="model_b"):
        fit_curve(a, mlp(1, width=9), data)
    bn = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="bn_data"):
        Curve(bn, bn).model_at(0.5)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (128,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.slow
def test_bezier_curve_beats_linear_path_on_mnist1d():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 2000
    d = make_dataset(args)
    x, y = torch.tensor(d["x"], dtype=torch.float32), torch.tensor(d["y"])
    xt, yt = torch.tensor(d["x_test"], dtype=torch.float32), torch.tensor(d["y_test"])
    a = _train(mlp(0, 40, 64, 10), x, y, 1500, 0)
    b = _train(mlp(1, 40, 64, 10), x, y, 1500, 1)
    theta_a = torch.cat([p.detach().flatten() for p in a.parameters()])
    curve = fit_curve(a, b, (x, y), "bezier", 1, epochs=30, lr=0.05, batch_size=128)
    assert torch.equal(curve.theta_a, theta_a)  # endpoints frozen, inputs untouched
    assert torch.equal(theta_a, torch.cat([p.detach().flatten() for p in a.parameters()]))
    lin = linear_path(a, b, (x, y), (xt, yt), num_points=11)
    bez = evaluate_path(curve, (x, y), (xt, yt), num_points=11)
    assert bez["train_loss"][0] == pytest.approx(lin["train_loss"][0], abs=1e-6)
    assert bez["train_loss"][-1] == pytest.approx(lin["train_loss"][-1], abs=1e-6)
    assert lin["loss_barrier"] > 0.1
    assert bez["loss_barrier"] < 0.5 * lin["loss_barrier"]
    assert bez["path_curvature"] > 0 and bez["arc_chord_ratio"] > 1

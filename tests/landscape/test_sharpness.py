"""Worst/average sharpness: closed forms on quadratics, ordering at a minimum, model safety, bad input."""

import math
import re

import pytest
import torch
from torch import nn

from landscape_sweep.landscape.hessian import hessian_eigenvalues, hessian_trace
from landscape_sweep.landscape.hvp import HessianOperator, make_generator
from landscape_sweep.landscape.sharpness import average_samples, sharpness
from tests._support.hessian import (
    DATA,
    Quadratic,
    assert_unchanged,
    dirty,
    exact_hessian,
    known_matrix,
    make_data,
    make_model,
    quadratic_loss,
    single_thread,  # noqa: F401 (autouse fixture)
    snapshot,
)

EIGS = [5.0, 2.0, 1.0, 0.5, -1.0]


def test_worst_l2_on_quadratic_is_half_rho2_lambda_max():
    A = known_matrix(EIGS)
    model, loss = Quadratic(torch.zeros(5)), quadratic_loss(A)
    for rho in (0.1, 0.3):
        got = sharpness(model, DATA, "worst", rho, steps=60, step_size=10 * rho, loss_fn=loss)
        assert got == pytest.approx(0.5 * rho**2 * 5.0, rel=1e-8)


def test_worst_linf_and_adaptive_closed_forms():
    a = torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)
    model, loss = Quadratic(torch.zeros(3)), quadratic_loss(torch.diag(a))
    got = sharpness(model, DATA, "worst", 0.1, norm="linf", loss_fn=loss)  # corners of the box
    assert got == pytest.approx(0.5 * 0.01 * float(a.sum()), rel=1e-12)
    # adaptive at the minimum w = c: delta = |c| * u, so the curvature is D A D with D = diag|c|
    A, c = known_matrix(EIGS), torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64)
    model, loss = Quadratic(c), quadratic_loss(A, c)
    D = torch.diag(c.abs())
    lam = float(torch.linalg.eigvalsh(D @ A @ D)[-1])
    got = sharpness(model, DATA, "worst", 0.05, adaptive=True, steps=200, step_size=0.5, loss_fn=loss)
    assert got == pytest.approx(0.5 * 0.05**2 * lam, rel=1e-6)


@pytest.mark.parametrize(("norm", "adaptive"), [("l2", False), ("linf", False), ("l2", True)])
def test_average_on_quadratic_matches_expectation(norm, adaptive):
    A, c = known_matrix(EIGS), torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64)
    model, loss = Quadratic(c), quadratic_loss(A, c)
    D = torch.diag(c.abs()) if adaptive else torch.eye(5, dtype=torch.float64)
    var = 1.0 if norm == "l2" else 1 / 3  # N(0, rho^2) or U[-rho, rho]
    expected = 0.5 * 0.1**2 * var * float(torch.trace(D @ A @ D))
    mean, se = sharpness(
        model, DATA, "average", 0.1, norm=norm, adaptive=adaptive, num_samples=400, loss_fn=loss, return_stderr=True
    )
    assert abs(mean - expected) < 3 * se and 0 < se < 0.2 * abs(expected)


def regression(at_minimum: bool) -> tuple[nn.Module, list, object]:
    """Linear least squares (MSE: an exact quadratic in the weights), at its minimum or at a random point."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -1.0, 2.0, 0.5], dtype=torch.float64) + 0.3 * torch.randn(40, generator=g).double()
    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()
    if at_minimum:
        sol = torch.linalg.lstsq(torch.cat([x, torch.ones(40, 1, dtype=torch.float64)], 1), y[:, None]).solution
        with torch.no_grad():
            model.weight.copy_(sol[:4].T)
            model.bias.copy_(sol[4])
    data = list(zip(x.split([15, 25]), y.split([15, 25])))
    mse = lambda out, t: ((out.squeeze(-1) - t) ** 2).mean()  # noqa: E731
    return model, data, mse


def test_antithetic_average_cancels_the_gradient_term():
    """Away from the minimum `g . delta` swamps one-sided samples; antithetic pairs are `delta^T H delta / 2`."""
    model, data, mse = regression(at_minimum=False)
    H = exact_hessian(model, data, loss_fn=mse)
    sigma, n = 0.05, 64
    expected = 0.5 * sigma**2 * float(torch.trace(H))
    mean, se = sharpness(model, data, "average", sigma, num_samples=n, loss_fn=mse, return_stderr=True)
    assert abs(mean - expected) < 3 * se and se < 0.2 * expected
    op = HessianOperator(model.eval(), data, mse)
    assert float(op.loss_and_grad()[1].norm()) > 1.0  # a point with a large gradient
    pairs = average_samples(op, torch.ones_like(op.w), sigma, "l2", n, make_generator(0))
    assert float(pairs.mean()) == pytest.approx(mean, rel=1e-12) and bool((pairs >= 0).all())
    one_sided = average_samples(op, torch.ones_like(op.w), sigma, "l2", n, make_generator(0), antithetic=False)
    old_mean, old_se = sharpness(
        model, data, "average", sigma, num_samples=n, antithetic=False, loss_fn=mse, return_stderr=True
    )
    assert float(one_sided.mean()) == pytest.approx(old_mean, rel=1e-12)
    assert bool((one_sided < 0).any()) and old_se > 3 * se and old_se > expected  # the signal is lost in noise


def test_worst_ge_average_ge_zero_at_a_minimum():
    model, data, mse = regression(at_minimum=True)
    lam = hessian_eigenvalues(model, data, loss_fn=mse, tol=1e-10)[0]
    rho, d = 0.2, 5
    worst = sharpness(model, data, "worst", rho, steps=100, step_size=100 * rho, loss_fn=mse)
    assert worst == pytest.approx(0.5 * rho**2 * lam, rel=1e-6)  # quadratic loss: exact
    avg = sharpness(model, data, "average", rho / math.sqrt(d), loss_fn=mse)  # same mean squared radius
    assert worst >= avg > 0
    assert sharpness(model, data, "worst", rho, norm="linf", loss_fn=mse) >= sharpness(
        model, data, "average", rho, norm="linf", loss_fn=mse
    )
    # from an exact stationary point (zero gradient) only the random start gets the ascent going
    quad, loss = Quadratic(torch.zeros(5)), quadratic_loss(known_matrix(EIGS))
    assert sharpness(quad, DATA, "worst", rho, random_start=False, loss_fn=loss) == 0.0


def test_worst_grows_with_rho_and_is_reproducible():
    model, data = make_model("mlp", bn=True), make_data()
    vals = [sharpness(model, data, "worst", rho, adaptive=True) for rho in (0.01, 0.05, 0.2)]
    assert 0 < vals[0] < vals[1] < vals[2]
    assert sharpness(model, data, "worst", 0.05, adaptive=True) == vals[1]
    a = sharpness(model, data, "average", 0.05, seed=1)
    assert a == sharpness(model, data, "average", 0.05, seed=1) != sharpness(model, data, "average", 0.05, seed=2)


def test_model_unchanged_and_float32():
    model, data = dirty(make_model("cnn", bn=True)), make_data()
    snap = snapshot(model)
    for kw in ({"kind": "worst"}, {"kind": "average", "norm": "linf"}, {"kind": "worst", "mode": "train"}):
        sharpness(model, data, rho=0.05, adaptive=True, **kw)
        assert_unchanged(model, snap)
    m64 = make_model("mlp", bn=True)
    m32 = make_model("mlp", bn=True).float()
    d32 = [(x.float(), y) for x, y in data]
    assert sharpness(m32, d32, "worst", 0.1) == pytest.approx(sharpness(m64, data, "worst", 0.1), rel=1e-4)


def test_bad_input():
    model, data = make_model("mlp", bn=False), make_data()
    with pytest.raises(ValueError, match="^kind='best': must be one of worst, average$"):
        sharpness(model, data, "best")
    with pytest.raises(ValueError, match="^norm='l1': must be one of l2, linf$"):
        sharpness(model, data, norm="l1")
    for rho in (0, -1.0, math.nan):
        with pytest.raises(ValueError, match=re.escape(f"rho={rho!r}: must be a finite number > 0")):
            sharpness(model, data, rho=rho)
    with pytest.raises(ValueError, match="^steps=0: must be an integer >= 1$"):
        sharpness(model, data, steps=0)
    with pytest.raises(ValueError, match="^num_samples=1: must be an integer >= 2$"):
        sharpness(model, data, "average", num_samples=1)
    with pytest.raises(ValueError, match="^return_stderr=True: only for kind='average'"):
        sharpness(model, data, return_stderr=True)
    with pytest.raises(ValueError, match="^step_size=-0.1: must be a finite number > 0$"):
        sharpness(model, data, step_size=-0.1)
    with pytest.raises(ValueError, match="data"):
        sharpness(model, [])
    with pytest.raises(ValueError, match="no trainable parameters"):
        sharpness(make_model("mlp", bn=False).requires_grad_(False), data)
    with pytest.raises(ValueError, match="non-finite"):
        sharpness(model, [(x * math.inf, y) for x, y in data], "average")


def _trained_mlp(act: type[torch.nn.Module]) -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(512, 10, generator=g, dtype=torch.float64), torch.randint(0, 3, (512,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), act(), torch.nn.Linear(32, 3)).double()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, (x, y)


def test_average_case_is_the_quadratic_term_only_for_smooth_activations():
    """Antithetic average-case sharpness / (sigma^2 tr(H) / 2): ~1 with GELU at every sigma, but above 1 with ReLU and
    growing as sigma shrinks (the kinks: first order in |delta|, invisible to the Hessian). The docs said it was
    sigma^2 tr(H) / 2 for small sigma whatever the activation."""
    ratios = {}
    for act in (torch.nn.GELU, torch.nn.ReLU):
        model, data = _trained_mlp(act)
        trace, _ = hessian_trace(model, data, num_probes=200)
        for sigma in (1e-2, 1e-4):
            avg, se = sharpness(model, data, "average", sigma, num_samples=200, return_stderr=True)
            ratios[act.__name__, sigma] = avg / (sigma**2 * trace / 2), se / (sigma**2 * trace / 2)
    for sigma in (1e-2, 1e-4):
        r, se = ratios["GELU", sigma]
        assert abs(r - 1) < 0.06 and se < 0.03
    assert ratios["ReLU", 1e-2][0] > 1.15 and ratios["ReLU", 1e-4][0] > ratios["ReLU", 1e-2][0] + 0.2

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape_sweep.training.sam import SAM, frozen_bn_stats

torch.set_default_dtype(torch.float64)  # restored below: exactness is tested in float64
X = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
torch.set_default_dtype(torch.float32)


def _model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def _closure(model, opt, counter=None):
    def closure():
        if counter is not None:
            counter.append(1)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), Y)
        loss.backward()
        return loss

    return closure


def _grad(model, w):
    def loss(params):
        return nn.functional.cross_entropy(functional_call(model, params, (X,)), Y)

    return torch.func.grad(loss)(w)


def _perturb(w, g, rho, adaptive):
    if adaptive:
        norm = torch.sqrt(sum(((w[k].abs() * g[k]) ** 2).sum() for k in w))
        return {k: w[k] + rho * w[k] ** 2 * g[k] / norm for k in w}
    norm = torch.sqrt(sum((g[k] ** 2).sum() for k in w))
    return {k: w[k] + rho * g[k] / norm for k in w}


def _sam_grad(model, w, rho, adaptive):
    return _grad(model, _perturb(w, _grad(model, w), rho, adaptive))


@pytest.mark.parametrize("adaptive, rho", [(False, 0.05), (True, 0.5)])
def test_two_sgd_steps_equal_the_hand_computed_update(adaptive, rho):
    model = _model()
    w = {k: v.detach().clone() for k, v in model.named_parameters()}
    lr, mom, wd = 0.1, 0.9, 5e-4
    opt = SAM(model.parameters(), base="sgd", rho=rho, adaptive=adaptive, lr=lr, momentum=mom, weight_decay=wd)
    calls = []
    loss = opt.step(_closure(model, opt, calls))
    assert len(calls) == 2
    assert float(loss.detach()) == pytest.approx(float(nn.functional.cross_entropy(functional_call(model, w, (X,)), Y)))
    g = _sam_grad(model, w, rho, adaptive)
    buf = {k: g[k] + wd * w[k] for k in w}
    w1 = {k: w[k] - lr * buf[k] for k in w}
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), w1[k], rtol=0, atol=1e-15)
    opt.step(_closure(model, opt))
    g = _sam_grad(model, w1, rho, adaptive)
    buf = {k: mom * buf[k] + g[k] + wd * w1[k] for k in w}
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), w1[k] - lr * buf[k], rtol=0, atol=1e-15)


@pytest.mark.parametrize("adaptive, rho", [(False, 0.05), (True, 0.5)])
def test_adam_step_equals_the_hand_computed_update(adaptive, rho):
    model = _model()
    w = {k: v.detach().clone() for k, v in model.named_parameters()}
    lr, (b1, b2), eps, wd = 1e-2, (0.9, 0.99), 1e-8, 1e-3
    opt = SAM(model.parameters(), base="adam", rho=rho, adaptive=adaptive, lr=lr, betas=(b1, b2), eps=eps,
              weight_decay=wd)  # fmt: skip
    opt.step(_closure(model, opt))
    g = _sam_grad(model, w, rho, adaptive)
    for k, p in model.named_parameters():
        gk = g[k] + wd * w[k]
        m_hat, v_hat = (1 - b1) * gk / (1 - b1), (1 - b2) * gk**2 / (1 - b2)
        torch.testing.assert_close(p.detach(), w[k] - lr * m_hat / (v_hat.sqrt() + eps), rtol=0, atol=1e-15)


def test_state_dict_holds_base_state_and_resumes_exactly():
    model = _model()
    opt = SAM(model.parameters(), base="adamw", rho=0.1, lr=1e-2)
    opt.step(_closure(model, opt))
    state = copy.deepcopy(opt.state_dict())
    assert {"exp_avg", "exp_avg_sq", "step"} <= set(state["state"][0])
    assert state["param_groups"][0]["rho"] == 0.1
    twin = copy.deepcopy(model)
    opt.step(_closure(model, opt))

    opt2 = SAM(twin.parameters(), base="adamw", rho=0.3, lr=5.0)  # everything is overwritten by the load
    opt2.load_state_dict(state)
    assert opt2.param_groups is opt2.base.param_groups and opt2.state is opt2.base.state
    opt2.step(_closure(twin, opt2))
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


def test_lr_scheduler_drives_the_base_optimizer():
    model = _model()
    opt = SAM(model.parameters(), base="sgd", rho=0.05, lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
    opt.step(_closure(model, opt))
    sched.step()
    assert opt.base.param_groups[0]["lr"] == 0.5


def test_failing_second_closure_restores_the_weights():
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), rho=0.05, lr=0.1)
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return _closure(model, opt)()

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)


def test_bad_arguments():
    params = list(_model().parameters())
    for rho in (0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^rho=.*: must be a finite number > 0$"):
            SAM(params, rho=rho, lr=0.1)
    with pytest.raises(ValueError, match=r"^base='lion': must be one of sgd, adam, adamw"):
        SAM(params, base="lion", lr=0.1)
    with pytest.raises(ValueError, match=r"^closure=None"):
        SAM(params, lr=0.1).step()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_bn_stats_after_a_sam_step_equal_one_plain_forward(momentum):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=momentum), nn.ReLU(), nn.Linear(4, 2))
    model = model.double()
    reference = copy.deepcopy(model)
    reference(X)  # one plain training-mode forward at w
    opt = SAM(model.parameters(), rho=0.5, lr=0.1)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        ctx = frozen_bn_stats(model) if len(calls) > 1 else torch.enable_grad()
        with ctx:
            loss = nn.functional.cross_entropy(model(X), Y)
        loss.backward()
        return loss

    opt.step(closure)
    bn, ref = model[1], reference[1]
    assert torch.equal(bn.running_mean, ref.running_mean) and torch.equal(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == 1 and bn.momentum == momentum and bn.training


def test_zero_gradient_gives_no_perturbation_and_no_nan():
    p = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = SAM([p], rho=0.05, lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * 0).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.equal(p.detach(), torch.ones(3, dtype=torch.float64))

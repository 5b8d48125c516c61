import copy

import pytest
import torch
from torch import nn

from landscape_sweep.landscape import align, apply_permutation, linear_path
from landscape_sweep.landscape.alignment import weight_matching

X = torch.randn(128, 1, 40, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(1))


def hand_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(40, 12), nn.LayerNorm(12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 10)
    )


HAND_SPEC = {
    "h1": [("1.weight", 0), ("1.bias", 0), ("2.weight", 0), ("2.bias", 0), ("4.weight", 1)],
    "h2": [("4.weight", 0), ("4.bias", 0), ("6.weight", 1)],
}


def train(model: nn.Module, steps: int = 30) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def permuted_copy(model: nn.Module, spec: dict, seed: int) -> tuple[nn.Module, dict]:
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    perms = {name: torch.randperm(sd[k].shape[ax], generator=g) for name, ((k, ax), *_) in spec.items()}
    other = copy.deepcopy(model)
    other.load_state_dict(apply_permutation(sd, spec, perms))
    return other, perms


def assert_recovers(model: nn.Module, spec: dict | None = None) -> None:
    spec = spec if spec is not None else model.permutation_spec()
    b, perms = permuted_copy(model, spec, seed=3)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    before = {k: v.clone() for k, v in b.state_dict().items()}
    aligned, found = align(model, b, spec=spec, return_perms=True)
    for k, v in model.state_dict().items():
        assert torch.equal(aligned.state_dict()[k], v), k  # the original weights, exactly
    torch.testing.assert_close(aligned(X), b(X), rtol=1e-4, atol=1e-5)  # same function as model_b
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in before.items())  # input untouched
    inverse = {g: torch.argsort(p) for g, p in perms.items()}
    assert all(torch.equal(found[g], inverse[g]) for g in perms)


def test_hand_spec_recovers_permuted_copy_and_keeps_function():
    assert_recovers(train(hand_mlp(0)), HAND_SPEC)


def test_apply_permutation_is_function_preserving():
    m = hand_mlp(0).eval()
    b, _ = permuted_copy(m, HAND_SPEC, seed=5)
    torch.testing.assert_close(b(X), m(X))
    assert not torch.equal(b[1].weight, m[1].weight)


@pytest.mark.parametrize("norm", ["batchnorm", "none", "layernorm"])
@pytest.mark.parametrize("arch,depth", [("mlp", 2), ("cnn", 2), ("resnet", 2), ("wide_resnet", 10)])
def test_families_recover_permuted_copy_with_zero_barrier(arch, depth, norm):
    from landscape_sweep.models import build_model

    torch.manual_seed(0)
    width = 2 if arch == "wide_resnet" else 8
    model = train(build_model(arch, (1, 40), 10, depth, width, norm=norm), steps=10)
    assert_recovers(model)
    b, _ = permuted_copy(model, model.permutation_spec(), seed=4)
    res = linear_path(model, align(model, b), (X, Y), num_points=5, bn_data=(X, Y))
    assert res["loss_barrier"] < 1e-5 and res["endpoint_distance"] < 1e-6


def test_aligning_independent_models_reduces_distance():
    a, b = train(hand_mlp(0)), train(hand_mlp(1))

    def dist(m: nn.Module) -> float:
        return float(torch.cat([(p - q).detach().flatten() for p, q in zip(a.parameters(), m.parameters())]).norm())

    aligned = align(a, b, spec=HAND_SPEC)
    assert dist(aligned) < dist(b)
    torch.testing.assert_close(aligned(X), b(X), rtol=1e-4, atol=1e-5)


def test_cost_is_parameters_only_but_bn_buffers_are_permuted():
    """Huge BN running statistics that favour another matching must not steer `align` (Ainsworth et al.)."""
    from landscape_sweep.models import build_model

    torch.manual_seed(0)
    a = build_model("mlp", (12,), 3, 2, 8, norm="batchnorm").train()
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(128, 12, generator=g), torch.randint(0, 3, (128,), generator=g)
    opt = torch.optim.Adam(a.parameters(), lr=1e-2)
    for _ in range(30):  # trained weights: at random init coordinate descent can stop short of a copy's perm
        loss = nn.functional.cross_entropy(a(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    a.eval()
    spec = a.permutation_spec()
    b, perms = permuted_copy(a, spec, seed=2)
    with torch.no_grad():  # b's statistics, in b's unit order, equal to a's *unpermuted* ones times 1e6
        for key in (k for k in a.state_dict() if k.endswith(("running_mean", "running_var"))):
            b.state_dict()[key].copy_(1e6 * a.state_dict()[key])
    sa, sb = a.state_dict(), b.state_dict()
    params = [n for n, _ in a.named_parameters()]
    by_params = weight_matching(sa, sb, spec, cost_keys=params)
    by_all = weight_matching(sa, sb, spec)  # the old cost: buffers included, and they dominate
    assert all(torch.equal(by_params[g], torch.argsort(perms[g])) for g in perms)
    assert any(not torch.equal(by_all[g], by_params[g]) for g in perms)
    aligned, found = align(a, b, return_perms=True)
    assert all(torch.equal(found[g], by_params[g]) for g in perms)
    for name in params:
        assert torch.equal(aligned.state_dict()[name], sa[name]), name
    assert not torch.equal(aligned.state_dict()["hidden.0.norm.running_var"], sb["hidden.0.norm.running_var"])
    torch.testing.assert_close(aligned(x), b(x))  # buffers permuted with their units: same function


def test_bad_input():
    a = hand_mlp(0)
    with pytest.raises(ValueError, match="permutation_spec"):
        align(a, hand_mlp(1))
    with pytest.raises(ValueError, match="not in the model"):
        align(a, hand_mlp(1), spec={"g": [("9.weight", 0)]})
    with pytest.raises(ValueError, match="sizes"):
        align(a, hand_mlp(1), spec={"g": [("1.weight", 0), ("4.weight", 0)]})
    with pytest.raises(ValueError, match="^method='activations': must be one of weights$"):
        align(a, hand_mlp(1), method="activations", spec=HAND_SPEC)
    with pytest.raises(ValueError, match="^max_iter=0: must be an integer >= 1$"):
        align(a, hand_mlp(1), spec=HAND_SPEC, max_iter=0)
    with pytest.raises(ValueError, match="perms"):
        apply_permutation(a.state_dict(), HAND_SPEC, {"h1": [0] * 12, "h2": list(range(10))})

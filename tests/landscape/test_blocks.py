"""Per-block curvature against dense Hessians: the block of a model's Hessian is its diagonal submatrix."""

import pytest
import torch

from landscape_sweep.landscape._core import select_params
from landscape_sweep.landscape.blocks import (
    block_curvature,
    block_filter,
    block_hessian,
    concentration,
    model_blocks,
)
from landscape_sweep.landscape.hvp import hvp
from landscape_sweep.models import build_model
from tests._support.hessian import (
    assert_unchanged,
    exact_hessian,
    make_data,
    make_model,
    single_thread,  # noqa: F401 (autouse fixture)
    snapshot,
)

TINY = {  # framework models small enough for a dense Hessian (input (1, 6), 3 classes)
    "mlp": dict(depth=2, width=3),
    "cnn": dict(depth=2, width=2),
    "resnet": dict(depth=1, width=1),
}


def tiny(arch: str, seed: int = 0) -> torch.nn.Module:
    """A framework model in float64, its BN running statistics set by a few train-mode passes, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(arch, (1, 6), 3, **TINY[arch]).double()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 1, 6, dtype=torch.float64))
    return model.eval()


def tiny_data():
    return [(x.view(-1, 1, 6), y) for x, y in make_data()]


def dense_blocks(model, data) -> dict[str, torch.Tensor]:
    """Each block's diagonal submatrix of the dense full Hessian."""
    H = exact_hessian(model, data)
    like = select_params(model)
    start, offset = {}, 0
    for name, p in like.items():
        start[name] = range(offset, offset + p.numel())
        offset += p.numel()
    out = {}
    for block, names in model_blocks(model).items():
        idx = torch.tensor([i for n in like if n in names for i in start[n]])
        out[block] = H[idx][:, idx]
    return out


@pytest.mark.parametrize("arch", list(TINY))
def test_restricted_hvp_equals_dense_block_times_v(arch):
    model, data = tiny(arch), tiny_data()
    dense = dense_blocks(model, data)
    g = torch.Generator().manual_seed(3)
    for block, names in model.param_blocks().items():
        v = torch.randn(dense[block].shape[0], generator=g, dtype=torch.float64)
        got = hvp(model, data, v, param_filter=block_filter(names))
        torch.testing.assert_close(got, dense[block] @ v, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(block_hessian(model, data, names), dense[block], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("arch", list(TINY))
def test_block_top_eig_and_trace_match_dense_blocks(arch):
    model, data = tiny(arch), tiny_data()
    dense, snap = dense_blocks(model, data), snapshot(model)
    recs = block_curvature(model, data, tol=1e-10, max_iter=300, num_probes=100, probes_per_pass=50)
    assert_unchanged(model, snap)
    assert [r["name"] for r in recs] == list(model.param_blocks())
    for r in recs:
        H = dense[r["name"]]
        assert r["n_params"] == H.shape[0]
        assert r["top_eig"] == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-7, abs=1e-10)
        assert r["top_eig_converged"] and r["top_eig_residual"] < 1e-4 * max(1.0, r["top_eig"])
        assert r["trace_probes"] == 100 and r["trace_stderr"] > 0
        assert abs(r["trace"] - float(H.trace())) < 4 * r["trace_stderr"]  # Hutchinson: within its stderr


def test_exact_mode_and_block_traces_add_up_to_the_full_trace():
    model, data = make_model("cnn", bn=True), make_data()
    blocks = {"conv": ["1.weight", "1.bias", "2.weight", "2.bias"], "head": ["5.weight", "5.bias"]}
    recs = block_curvature(model, data, blocks, exact_max_dim=100)
    H = exact_hessian(model, data)
    assert sum(r["trace"] for r in recs) == pytest.approx(float(H.trace()), rel=1e-10)
    head = H[-27:, -27:]  # head: 8 * 3 weights + 3 biases, last in parameter order
    assert recs[1]["n_params"] == 27 and recs[1]["trace_probes"] == 0 and recs[1]["trace_stderr"] == 0.0
    assert recs[1]["top_eig"] == pytest.approx(float(torch.linalg.eigvalsh(head)[-1]), rel=1e-10)
    assert recs[1]["top_eig_converged"] and recs[1]["top_eig_residual"] < 1e-10
    # each block's top eigenvalue is at most the full one (Cauchy interlacing)
    assert max(r["top_eig"] for r in recs) <= float(torch.linalg.eigvalsh(H)[-1]) + 1e-10


def test_trace_off_gives_eigenvalues_only():
    model, data = make_model("mlp", bn=False), make_data()
    recs = block_curvature(model, data, {"a": ["0.weight", "0.bias"], "b": ["3.weight", "3.bias"]}, trace=False)
    assert all("trace" not in r and "top_eig" in r for r in recs)


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ({"a": ["0.weight", "0.bias", "3.weight"]}, "parameter '3.bias' is in no block"),
        ({"a": ["0.weight", "0.bias", "3.weight", "3.bias"], "b": ["0.bias"]}, "already in block 'a'"),
        ({"a": ["0.weight", "nope"]}, "'nope' is not a trainable parameter"),
    ],
)
def test_bad_blocks_fail_naming_the_parameter(blocks, message):
    with pytest.raises(ValueError, match=message):
        model_blocks(make_model("mlp", bn=False), blocks)


def test_concentration_known_answers():
    recs = [{"top_eig": 1.0, "trace": 2.0}, {"top_eig": 5.0, "trace": 2.0}, {"top_eig": 3.0, "trace": 4.0}]
    assert concentration(recs) == {"first_trace_fraction": 0.25, "last_trace_fraction": 0.5, "sharpest_position": 0.5}
    assert concentration([{"top_eig": 2.0}]) == {
        "first_trace_fraction": None,
        "last_trace_fraction": None,
        "sharpest_position": 0.0,
    }

"""Eigenvalues, trace and SLQ spectrum against dense Hessians (float64, tiny models) and known spectra."""

import math
import warnings

import numpy as np
import pytest
import torch

from landscape_sweep.landscape.hessian import (
    hessian_eigenvalues,
    hessian_spectrum,
    hessian_trace,
    spectral_density,
)
from landscape_sweep.landscape.hvp import make_generator, rademacher
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


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("bn", [False, True])
def test_top_eigenvalues_match_exact(kind, bn):
    model, data = make_model(kind, bn), make_data()
    exact = torch.linalg.eigvalsh(exact_hessian(model, data)).flip(0)
    got = hessian_eigenvalues(model, data, k=3, tol=1e-10, max_iter=200)
    assert got == pytest.approx(exact[:3].tolist(), rel=1e-6)


def test_eigenvectors_and_power_method():
    model, data = make_model("mlp", bn=True), make_data()
    H = exact_hessian(model, data)
    exact = torch.linalg.eigvalsh(H)
    vals, vecs = hessian_eigenvalues(model, data, k=2, tol=1e-10, max_iter=200, return_vectors=True)
    assert vecs.shape == (2, H.shape[0])
    for lam, u in zip(vals, vecs):
        assert float(u.norm()) == pytest.approx(1.0, abs=1e-10)
        assert float((H @ u - lam * u).norm()) < 1e-6  # residual ~ sqrt(eigenvalue error * gap)
    top_mag = exact[exact.abs().argmax()]
    power = hessian_eigenvalues(model, data, k=1, method="power", tol=1e-12, max_iter=2000)
    assert power[0] == pytest.approx(float(top_mag), rel=1e-6)


def run_with_info(model, data, **kw) -> tuple[list[float], torch.Tensor, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with return_info the caller reads `converged`: no warning
        return hessian_eigenvalues(model, data, return_vectors=True, return_info=True, **kw)


@pytest.mark.parametrize(
    ("method", "good", "bad"),
    [("lanczos", {"k": 3, "tol": 1e-10, "max_iter": 200}, {"k": 3, "max_iter": 4}),
     ("power", {"k": 1, "tol": 1e-12, "max_iter": 2000}, {"k": 1, "max_iter": 3})],
)  # fmt: skip
def test_return_info_reports_residuals_bounds_and_convergence(method, good, bad):
    model, data = make_model("mlp", bn=True), make_data()
    H = exact_hessian(model, data)
    exact = torch.linalg.eigvalsh(H).flip(0)
    scale = float(exact.abs().max())
    vals, vecs, info = run_with_info(model, data, method=method, **good)
    assert set(info) == {"residuals", "error_bounds", "converged", "num_hvps"}
    dense = [float((H @ v - lam * v).norm()) for lam, v in zip(vals, vecs)]
    assert info["residuals"] == pytest.approx(dense, rel=1e-6, abs=1e-14)
    assert info["converged"] and 0 < info["num_hvps"] <= good["max_iter"]
    assert max(info["residuals"]) < 1e-6 * scale
    assert vals == pytest.approx(exact[: good["k"]].tolist(), rel=1e-6)
    for lam, ex, bound in zip(vals, exact.tolist(), info["error_bounds"]):
        assert abs(lam - ex) <= bound + 1e-12 * scale  # the reported bound holds
    if method == "lanczos":
        assert max(info["error_bounds"]) <= good["tol"] * scale
    _, _, short = run_with_info(model, data, method=method, **bad)
    assert not short["converged"] and short["num_hvps"] == bad["max_iter"]
    assert min(short["residuals"]) > 1e3 * max(info["residuals"])
    with pytest.warns(UserWarning, match="did not reach tol"):
        hessian_eigenvalues(model, data, method=method, **bad)


def test_quadratic_spectrum_is_exact_including_repeated_and_negative():
    eigs = [4.0, 3.0, 3.0, 1.0, 0.5, -1.0, -2.0]
    A = known_matrix(eigs)
    model, loss = Quadratic(torch.randn(7)), quadratic_loss(A)
    got = hessian_eigenvalues(model, DATA, k=4, loss_fn=loss, tol=1e-12)
    assert got == pytest.approx(eigs[:4], rel=1e-10)
    # power iteration: largest magnitude first (5, then -4), reported descending
    B = known_matrix([5.0, -4.0, 2.0, 1.0], seed=1)
    got = hessian_eigenvalues(
        Quadratic(torch.zeros(4)), DATA, k=2, method="power", loss_fn=quadratic_loss(B), tol=1e-14, max_iter=500
    )
    assert got == pytest.approx([5.0, -4.0], rel=1e-6)


def test_trace_within_three_stderr_and_stderr_scaling():
    model, data = make_model("cnn", bn=True), make_data()
    H = exact_hessian(model, data)
    exact = float(torch.trace(H))
    theory = math.sqrt(2 * (float((H**2).sum()) - float((H.diagonal() ** 2).sum())))  # std of one probe
    m16, s16 = hessian_trace(model, data, num_probes=16, seed=3)
    m256, s256 = hessian_trace(model, data, num_probes=256, probes_per_pass=32, seed=3)
    assert abs(m256 - exact) < 3 * s256 and abs(m16 - exact) < 3 * s16
    assert s256 == pytest.approx(theory / 16, rel=0.15)
    assert 3.0 < s16 / s256 < 5.3


def test_trace_exact_for_diagonal_and_reproducible():
    A = torch.diag(torch.tensor([3.0, -1.0, 0.25, 7.0], dtype=torch.float64))
    model, loss = Quadratic(torch.randn(4)), quadratic_loss(A)
    assert hessian_trace(model, DATA, num_probes=5, loss_fn=loss) == pytest.approx((9.25, 0.0), abs=1e-12)
    model, data = make_model("mlp", bn=False), make_data()
    a = hessian_trace(model, data, num_probes=12, probes_per_pass=1, seed=7)
    b = hessian_trace(model, data, num_probes=12, probes_per_pass=5, seed=7)
    c = hessian_trace(model, data, num_probes=12, probes_per_pass=5, seed=8)
    assert a == pytest.approx(b, rel=1e-12) and a != c


def test_slq_moments_equal_exact_moments_of_the_same_probes():
    model, data = make_model("mlp", bn=True), make_data()
    H = exact_hessian(model, data)
    d = H.shape[0]
    nodes, weights = hessian_spectrum(model, data, num_runs=5, num_steps=d, runs_per_pass=2, seed=4)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12) and (weights >= 0).all()
    gen = make_generator(4)
    V = torch.cat([rademacher((p, d), gen, H) for p in (2, 2, 1)]) / math.sqrt(d)  # same draws
    for power in (1, 2, 3):  # Gauss quadrature with >= 2 nodes is exact for these
        exact = float(torch.einsum("rd,de,re->", V, torch.linalg.matrix_power(H, power), V)) / 5
        assert float((weights * nodes**power).sum()) == pytest.approx(exact, rel=1e-9)
    # a full-length run recovers the exact eigenvalues (all distinct here)
    exact_eigs = torch.linalg.eigvalsh(H).numpy()
    one = hessian_spectrum(model, data, num_runs=1, num_steps=d, seed=0)[0]
    assert np.allclose(np.sort(one)[-3:], exact_eigs[-3:], rtol=1e-8)


def test_spectral_density_smoothing():
    grid, dens = spectral_density([1.0, 3.0], [0.25, 0.75], sigma=0.1)
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-6)
    assert grid[dens.argmax()] == pytest.approx(3.0, abs=0.01)
    g = np.array([1.0])
    assert spectral_density([1.0], [1.0], grid=g, sigma=0.5)[1][0] == pytest.approx(1 / (0.5 * math.sqrt(2 * math.pi)))
    with pytest.raises(ValueError, match="^sigma=-1: must be a finite number > 0$"):
        spectral_density([1.0], [1.0], sigma=-1)
    with pytest.raises(ValueError, match="nodes/weights"):
        spectral_density([1.0, 2.0], [1.0])


def test_every_function_leaves_the_model_unchanged():
    model, data = dirty(make_model("cnn", bn=True)), make_data()
    snap = snapshot(model)
    hessian_eigenvalues(model, data, k=2, max_iter=10)
    assert_unchanged(model, snap)
    hessian_eigenvalues(model, data, k=1, method="power", max_iter=5, mode="train")
    assert_unchanged(model, snap)
    hessian_trace(model, data, num_probes=4)
    assert_unchanged(model, snap)
    hessian_spectrum(model, data, num_runs=2, num_steps=4)
    assert_unchanged(model, snap)


def test_bad_input():
    model, data = make_model("mlp", bn=False), make_data()
    with pytest.raises(ValueError, match=r"^k=0: must be an integer in \[1, 53\]$"):
        hessian_eigenvalues(model, data, k=0)
    with pytest.raises(ValueError, match=r"^k=54: must be an integer in \[1, 53\]$"):
        hessian_eigenvalues(model, data, k=54)
    with pytest.raises(ValueError, match="^method='arnoldi': must be one of lanczos, power$"):
        hessian_eigenvalues(model, data, method="arnoldi")
    with pytest.raises(ValueError, match="^tol=0: must be a finite number > 0$"):
        hessian_eigenvalues(model, data, tol=0)
    with pytest.raises(ValueError, match="^max_iter=2: must be an integer >= 3$"):
        hessian_eigenvalues(model, data, k=3, max_iter=2)
    with pytest.raises(ValueError, match="^mode='test': must be one of eval, train$"):
        hessian_trace(model, data, mode="test")
    with pytest.raises(ValueError, match="^num_probes=1: must be an integer >= 2$"):
        hessian_trace(model, data, num_probes=1)
    with pytest.raises(ValueError, match="^num_steps=0: must be an integer >= 1$"):
        hessian_spectrum(model, data, num_steps=0)
    with pytest.raises(ValueError, match="data"):
        hessian_trace(model, [])
    with pytest.raises(ValueError, match="no trainable parameters"):
        hessian_eigenvalues(make_model("mlp", bn=False).requires_grad_(False), data)
    with pytest.raises(ValueError, match="non-finite"):
        hessian_spectrum(model, [(x * math.nan, y) for x, y in data])


def _hidden_top(dim: int, seed: int, overlap: float) -> torch.Tensor:
    """A Hessian whose top eigenvector (3.29) has only `overlap` along Lanczos's start vector for `seed`, and whose
    second (2.82, the mnist1d 1x16 endpoint's pair) has a large one: the shape that stopped Lanczos on the second."""
    v0 = torch.randn(dim, generator=make_generator(seed), dtype=torch.float64)
    v0 = v0 / v0.norm()  # lanczos_top's first vector
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    q[:, 1] = 0.6 * v0 + 0.8 * q[:, 1]  # the second eigenvector: well inside the first Krylov vectors
    w = q[:, 0] - (q[:, 0] @ v0) * v0
    q[:, 0] = overlap * v0 + math.sqrt(1 - overlap**2) * w / w.norm()
    q, _ = torch.linalg.qr(q)  # orthonormal again, columns 0 and 1 keep their span order
    eigs = torch.cat([torch.tensor([3.2875, 2.8223]), torch.linspace(1.81, 0.0, dim - 2)]).double()
    return q @ torch.diag(eigs) @ q.T


def test_lanczos_builds_a_minimum_krylov_space_before_it_trusts_a_ritz_value():
    """Without MIN_KRYLOV the refined error bound, judged on the gap to the few Ritz values seen, declared the second
    eigenvalue converged after a handful of products; with it the top one is found, and the dense answer agrees."""
    A = _hidden_top(60, seed=0, overlap=1e-3)
    top = float(torch.linalg.eigvalsh(A)[-1])
    loss = quadratic_loss(A)
    eigs, info = hessian_eigenvalues(Quadratic(torch.zeros(60)), DATA, loss_fn=loss, tol=1e-3, return_info=True)
    assert info["converged"] and info["num_hvps"] >= 20
    assert eigs[0] == pytest.approx(top, rel=1e-3)
    early = hessian_eigenvalues(Quadratic(torch.zeros(60)), DATA, loss_fn=loss, tol=1e-3, min_iter=0)
    assert early[0] == pytest.approx(2.8223, rel=2e-3)  # what the old rule reported: the second eigenvalue

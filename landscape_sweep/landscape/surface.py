"""Loss surfaces: 1-D lines / 2-D grids around a model (Li et al. 2018) and the plane through three models.

Grid points are `origin + a * d1 (+ b * d2)`, evaluated together by `paths.evaluate_points`
(vmapped over points). Returns plain dicts of lists: `loss[i][j]` is at `(x[i], y[j])`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from landscape_sweep.checks import check_choice, check_int, fail

from ._core import Data, LossFn, default_loss, flatten, has_batchnorm
from .curves import varied_names
from .interpolation import check_pair
from .paths import evaluate_points

NORMALIZATIONS = ("filter", "layer", "none")


def random_direction(model: nn.Module, normalization: str = "filter", generator: torch.Generator | None = None) -> dict:
    """A Gaussian direction shaped like the model's parameters, normalised as in Li et al. (2018).

    "filter": each filter (slice along axis 0) rescaled to the norm of the model's filter; "layer": each
    tensor to the norm of the model's tensor; "none": raw. 1-D tensors (biases, norm parameters) get
    zero, Li et al.'s default of not perturbing them (except with "none").
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    out = {}
    for name, p in model.named_parameters():
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        if normalization != "none" and p.ndim <= 1:
            d.zero_()
        elif normalization == "filter":
            dims = tuple(range(1, p.ndim))
            d *= p.detach().norm(dim=dims, keepdim=True) / (d.norm(dim=dims, keepdim=True) + 1e-10)
        elif normalization == "layer":
            d *= p.detach().norm() / (d.norm() + 1e-10)
        out[name] = d
    return out


def _flat_direction(model: nn.Module, names: list, direction: dict[str, Tensor]) -> Tensor:
    state = model.state_dict()
    unknown = set(direction) - set(state)
    if unknown:
        raise ValueError(f"directions: keys {sorted(unknown)[:3]} are not in the model's state_dict")
    parts = []
    for k, shape in names:
        d = direction.get(k)
        if d is not None and d.shape != shape:
            raise ValueError(f"directions: '{k}' has shape {tuple(d.shape)}, the model's is {tuple(shape)}")
        parts.append(torch.zeros_like(state[k]).reshape(-1) if d is None else d.detach().to(state[k]).reshape(-1))
    return flatten(parts)


def _grid(model, names, controls, xs, ys, datasets, bn_data, loss_fn, vectorize) -> list[list[float]]:
    rows = [[1.0, a] + ([b] if ys is not None else []) for a in xs for b in (ys if ys is not None else [0.0])]
    coeffs = torch.tensor(rows, dtype=controls.dtype, device=controls.device)
    return evaluate_points(model, coeffs, controls, names, datasets, bn_data, loss_fn, vectorize)[0]


def loss_surface(
    model: nn.Module,
    data: Data,
    dims: int = 1,
    directions: Sequence[dict[str, Tensor]] | None = None,
    span: tuple[float, float] = (-1.0, 1.0),
    num_points: int = 21,
    normalization: str = "filter",
    seed: int = 0,
    bn_data: Data | None = None,
    loss_fn: LossFn = default_loss,
    vectorize: bool | None = None,
) -> dict:
    """Loss and accuracy on a line (dims=1) or grid (dims=2) around `model` along `directions`.

    Directions are `{state key: tensor}` dicts (missing keys: 0), by default random and normalised by
    `normalization` (seeded). Returns `{"x", "loss", "acc"}` (+ `"y"`, 2-D lists for dims=2). BN
    statistics are recomputed at each point over `bn_data` if given, else the model's own are kept.
    """
    check_choice("dims", dims, (1, 2))
    check_int("num_points", num_points, low=2)
    if directions is None:
        gen = torch.Generator().manual_seed(seed)
        directions = [random_direction(model, normalization, gen) for _ in range(dims)]
    if len(directions) != dims:
        fail("len(directions)", len(directions), f"must equal dims={dims} (one direction per dimension)")
    names = varied_names(model)
    origin = flatten(model.state_dict(), names)
    controls = torch.stack([origin] + [_flat_direction(model, names, d) for d in directions])
    xs = torch.linspace(span[0], span[1], num_points, dtype=torch.float64).tolist()
    ys = xs if dims == 2 else None
    loss, acc = _grid(model, names, controls, xs, ys, [data], bn_data, loss_fn, vectorize)
    if dims == 1:
        return {"x": xs, "loss": loss, "acc": acc}
    n = num_points
    return {"x": xs, "y": xs, "loss": [loss[i * n : (i + 1) * n] for i in range(n)],
            "acc": [acc[i * n : (i + 1) * n] for i in range(n)]}  # fmt: skip


def plane_surface(
    model_a: nn.Module,
    model_b: nn.Module,
    model_c: nn.Module,
    data: Data,
    num_points: int = 21,
    margin: float = 0.2,
    bn_data: Data | None = None,
    loss_fn: LossFn = default_loss,
    vectorize: bool | None = None,
) -> dict:
    """Loss/accuracy on the plane through three models (e.g. two endpoints and a curve's bend).

    Orthonormal axes by Gram-Schmidt (Garipov et al. 2018): u along b - a, v along the part of c - a
    orthogonal to u; the grid covers the three models plus `margin` of the range on each side. Returns
    `{"x", "y", "loss", "acc", "models_xy"}` with `models_xy` = [[x, y] of a, b, c]. BN statistics are
    recomputed at each point over `bn_data` (required for models with BN).
    """
    check_pair(model_a, model_b)
    check_pair(model_a, model_c)
    check_int("num_points", num_points, low=2)
    if has_batchnorm(model_a) and bn_data is None:
        raise ValueError("bn_data: the models have BatchNorm; pass data to recompute its statistics on the plane")
    names = varied_names(model_a)
    a, b, c = (flatten(m.state_dict(), names).double() for m in (model_a, model_b, model_c))
    u = b - a
    if float(u.norm()) == 0:
        raise ValueError("model_b: identical to model_a; the plane is undefined")
    u = u / u.norm()
    v = (c - a) - ((c - a) @ u) * u
    if float(v.norm()) <= 1e-12 * float((c - a).norm() + 1):
        raise ValueError("model_c: on the line through model_a and model_b; the plane is undefined")
    v = v / v.norm()
    xy = [[0.0, 0.0], [float((b - a) @ u), 0.0], [float((c - a) @ u), float((c - a) @ v)]]
    axes = []
    for j in range(2):
        lo, hi = min(p[j] for p in xy), max(p[j] for p in xy)
        pad = margin * (hi - lo)
        axes.append(torch.linspace(lo - pad, hi + pad, num_points, dtype=torch.float64).tolist())
    dtype = flatten(model_a.state_dict(), names).dtype
    controls = torch.stack([a, u, v]).to(dtype)
    loss, acc = _grid(model_a, names, controls, axes[0], axes[1], [data], bn_data, loss_fn, vectorize)
    n = num_points
    return {"x": axes[0], "y": axes[1], "models_xy": xy,
            "loss": [loss[i * n : (i + 1) * n] for i in range(n)],
            "acc": [acc[i * n : (i + 1) * n] for i in range(n)]}  # fmt: skip

"""REPAIR (Jordan et al. 2023): interpolate aligned networks, then renormalise each unit's statistics.

Averaging the weights of two aligned networks shrinks the spread of hidden pre-activations layer after
layer ("variance collapse"). REPAIR rescales every corrected unit of the interpolated network at t so that
its mean and std over data equal the interpolation of the endpoints' statistics:
`target = (1 - t) * stat_A + t * stat_B` for the mean and the std. The correction is applied in forward order
(correcting one layer changes the statistics of every later one) and folded into the layer that writes
the unit: `w <- w * s`, `b <- (b - mean) * s + target_mean` with `s = target_std / std`, so a repaired point
is an ordinary model of the same architecture.

Which units (`repair_sites`): the outputs of the layers whose output axis is a permutation group and that
carry a per-channel weight and bias, i.e. the last per-channel affine map before the unit is read. Without
normalisation (`norm=none`) these are the hidden Linear/Conv layers (the raw pre-activations, as in the
paper); with LayerNorm/GroupNorm they are the norms' affine outputs (hidden convs/linears carry no bias
there). Networks with BatchNorm have no site: their BN statistics are recomputed at every point of every
path, which is REPAIR's counterpart for BN networks (the paper's "RESET"), so the repaired path is the
aligned segment. Statistics are per channel, over samples and positions, population variance, float64.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ._core import Data, flatten, has_batchnorm, iter_batches, model_device, unflatten_like
from .curves import varied_names
from .interpolation import check_pair, recompute_bn

_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LayerNorm, nn.GroupNorm)
_TINY = 1e-12  # a unit with a smaller std (constant over the data) keeps its scale; only its mean is moved
Stats = dict[str, tuple[Tensor, Tensor]]  # site -> (mean, std) per channel, float64


def repair_sites(model: nn.Module, spec: dict[str, list[tuple[str, int]]] | None = None) -> list[str]:
    """Names of the modules whose outputs REPAIR corrects (see the module doc), in module order.

    `spec` defaults to `model.permutation_spec()`. Empty for models with BatchNorm.
    """
    if has_batchnorm(model):
        return []
    if spec is None:
        if not hasattr(model, "permutation_spec"):
            raise ValueError(f"spec: {type(model).__name__} has no permutation_spec(); pass spec explicitly")
        spec = model.permutation_spec()
    grouped = {key for axes in spec.values() for key, axis in axes if axis == 0}
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, _AFFINE)
        and getattr(m, "weight", None) is not None
        and getattr(m, "bias", None) is not None
        and {f"{name}.weight", f"{name}.bias"} <= grouped
    ]


def _channel_sums(out: Tensor) -> tuple[Tensor, Tensor, int]:
    """Per-channel (axis 1) sum and sum of squares over samples and positions, float64, and the count."""
    flat = out.detach().transpose(0, 1).reshape(out.shape[1], -1).double()
    return flat.sum(1), (flat * flat).sum(1), flat.shape[1]


def _measure(model: nn.Module, state: dict[str, Tensor], data: Data, sites: list[str]) -> tuple[Stats, list[str]]:
    """Mean and std of each site's output at `state` over `data` (batch by batch), and the order the sites ran in."""
    modules = dict(model.named_modules())
    sums: dict[str, list] = {}
    order: list[str] = []

    def hook(name: str):
        def record(_m: nn.Module, _inp: tuple, out: Tensor) -> None:
            s, sq, n = _channel_sums(out)
            acc = sums.setdefault(name, [0.0, 0.0, 0])
            acc[0], acc[1], acc[2] = acc[0] + s, acc[1] + sq, acc[2] + n
            if name not in order:
                order.append(name)

        return record

    handles = [modules[s].register_forward_hook(hook(s)) for s in sites]
    try:
        for x, _ in iter_batches(data, model_device(model)):
            functional_call(model, state, (x,), strict=False)
    finally:
        for h in handles:
            h.remove()
    return {name: _mean_std(*acc) for name, acc in sums.items()}, order


def _mean_std(s: Tensor, sq: Tensor, n: int) -> tuple[Tensor, Tensor]:
    mean = s / n
    return mean, (sq / n - mean * mean).clamp_min(0).sqrt()


@torch.no_grad()
def unit_stats(model: nn.Module, data: Data, sites: Iterable[str]) -> Stats:
    """`{site: (mean, std)}` of each site's output channels over `data`, the model in eval mode."""
    sites = list(sites)
    was = model.training
    try:
        stats, _ = _measure(model.eval(), dict(model.state_dict()), data, sites)
    finally:
        model.train(was)
    return stats


@torch.no_grad()
def repair_state(
    model: nn.Module, state: dict[str, Tensor], x: Tensor, sites: list[str], targets: Stats
) -> tuple[dict[str, Tensor], float | None]:
    """`state` with each site's output renormalised to `targets[site]` over the inputs `x` (one batch), folded
    into the site's weight and bias. `model` (eval mode) gives the architecture.

    One forward pass: each site's hook measures its output (every earlier site already corrected, as the
    correction is applied to the output it passes on) and corrects it, so the sites are handled in forward order.
    Returns the new state and the mean over units of std / target std before correction (< 1: variance
    collapse; None without sites).
    """
    if not sites:
        return dict(state), None
    modules, folds = dict(model.named_modules()), {}

    def hook(name: str):
        def correct(_m: nn.Module, _inp: tuple, out: Tensor) -> Tensor:
            mean, std = _mean_std(*_channel_sums(out))
            t_mean, t_std = targets[name]
            ok = std > _TINY
            scale = torch.where(ok, t_std / torch.where(ok, std, 1.0), 1.0)
            ratio = torch.where(t_std > _TINY, std / t_std.clamp_min(_TINY), 1.0)
            folds[name] = (mean, scale, t_mean, ratio)
            shape = (1, -1) + (1,) * (out.ndim - 2)
            return (out.double() * scale.view(shape) + (t_mean - mean * scale).view(shape)).to(out.dtype)

        return correct

    handles = [modules[s].register_forward_hook(hook(s)) for s in sites]
    try:
        functional_call(model, state, (x,), strict=False)
    finally:
        for h in handles:
            h.remove()
    state = dict(state)
    for site, (mean, scale, t_mean, _) in folds.items():
        w, b = state[f"{site}.weight"], state[f"{site}.bias"]
        state[f"{site}.weight"] = (w.double() * scale.view((-1,) + (1,) * (w.ndim - 1))).to(w.dtype)
        state[f"{site}.bias"] = ((b.double() - mean) * scale + t_mean).to(b.dtype)
    ratios = [f[3] for f in folds.values()]
    return state, (float(torch.cat(ratios).mean()) if ratios else None)


class RepairedPath:
    """The REPAIR-corrected segment from `model_a` (t=0) to `model_b` (t=1), usually an aligned copy of B.

    `points(t)` gives the repaired points as flat weights `(P, D)` over `names` (as a `Curve`'s points), to be
    evaluated with the architecture and non-varied state of `model` (a copy of `model_a`); `model_at(t)` one
    standalone model. Statistics (endpoints' and each point's) are measured over `data` in eval mode; its inputs
    are held as one batch (each point is repaired in one forward pass over them).
    `info`: `layers` and `units` corrected, `stats_samples`, and `std_ratio` per t of the last `points` call.
    The inputs are copied, never modified.
    """

    def __init__(self, model_a: nn.Module, model_b: nn.Module, data: Data, spec: dict | None = None):
        check_pair(model_a, model_b)
        self.model = copy.deepcopy(model_a).requires_grad_(False).eval()
        self.names = varied_names(model_a)
        state_a, state_b = model_a.state_dict(), model_b.state_dict()
        self.theta_a, self.theta_b = flatten(state_a, self.names), flatten(state_b, self.names)
        sites = repair_sites(model_a, spec)
        self.x = torch.cat([x for x, _ in iter_batches(data, model_device(model_a))]) if sites else None
        with torch.no_grad():
            self.stats_a, order = _measure(self.model, dict(state_a), data, sites)
            self.stats_b, _ = _measure(self.model, dict(state_b), data, sites)
        self.sites = order + [s for s in sites if s not in order]  # forward order, then any site never run
        units = sum(len(self.stats_a[s][0]) for s in self.sites if s in self.stats_a)
        self.info: dict = {
            "layers": len(self.sites),
            "units": units,
            "stats_samples": 0 if self.x is None else len(self.x),
            "std_ratio": None,
        }

    def targets(self, t: float) -> Stats:
        """Interpolated endpoint statistics `(1 - t) * stat_A + t * stat_B` of every site at `t`."""
        lerp = lambda s, i: torch.lerp(self.stats_a[s][i], self.stats_b[s][i], t)  # noqa: E731
        return {s: (lerp(s, 0), lerp(s, 1)) for s in self.sites if s in self.stats_a}

    @torch.no_grad()
    def state_at(self, t: float) -> tuple[dict[str, Tensor], float | None]:
        """The varied state of the repaired point at `t` and its mean std ratio before correction."""
        point = unflatten_like(torch.lerp(self.theta_a, self.theta_b, float(t)), self.names)
        full = {**dict(self.model.state_dict()), **point}
        sites = [s for s in self.sites if s in self.stats_a]
        state, ratio = repair_state(self.model, full, self.x, sites, self.targets(float(t)))
        return {k: state[k] for k, _ in self.names}, ratio

    def points(self, t: Tensor | Iterable[float]) -> Tensor:
        """The repaired points at the values `t` as a `(P, D)` stack of flat weights (order of `names`)."""
        rows, ratios = [], []
        for s in torch.as_tensor(t, dtype=torch.float64).reshape(-1).tolist():
            state, ratio = self.state_at(s)
            rows.append(flatten(state, self.names))
            ratios.append(ratio)
        self.info["std_ratio"] = ratios if self.sites else None
        return torch.stack(rows)

    @torch.no_grad()
    def model_at(self, t: float, bn_data: Data | None = None) -> nn.Module:
        """A standalone copy of the repaired model at `t`, BN statistics recomputed over `bn_data` if any."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.state_at(float(t))[0], strict=False)
        model.requires_grad_(True)
        return recompute_bn(model, bn_data) if bn_data is not None else model

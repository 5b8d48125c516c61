"""Weight matching (Ainsworth et al. 2023, "Git Re-Basin"): permute model_b's hidden units towards model_a.

Permuting the hidden units of a layer (and the matching input axis of the layers that read them) does
not change the function. A permutation spec `{group: [(state_dict_key, axis), ...]}` lists, for each
group of jointly permuted units, every state axis it acts on (weights, biases, norm parameters and BN
buffers). Weight matching maximises `sum_key <theta_a[key], pi(theta_b)[key]>` by coordinate descent:
each group in turn (random order) solves a linear assignment problem on the similarity summed over its
axes, with the other groups' current permutations applied, until no group improves.

The similarity is built from the *parameters* only, as Ainsworth et al. do (`cost_keys`; `align` passes
the model's parameter names): BatchNorm running statistics are data statistics, not weights, and their
scale (a running_var can be orders of magnitude above any weight) would otherwise decide the matching.
They are still permuted with their units, so the aligned model computes the same function.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from landscape_sweep.checks import check_choice, check_int

from .interpolation import check_pair

Spec = dict[str, list[tuple[str, int]]]


def _axes_by_key(spec: Spec, state: dict[str, Tensor]) -> tuple[dict[str, dict[int, str]], dict[str, int]]:
    """Validate `spec` against `state`; return {key: {axis: group}} and {group: size}."""
    if not isinstance(spec, dict) or not spec:
        raise ValueError(f"spec: got {type(spec).__name__}; need a non-empty {{group: [(key, axis), ...]}} dict")
    axes: dict[str, dict[int, str]] = {}
    sizes: dict[str, int] = {}
    for group, entries in spec.items():
        for key, axis in entries:
            if key not in state:
                raise ValueError(f"spec: group '{group}' names '{key}', which is not in the model's state_dict")
            if not 0 <= axis < state[key].ndim:
                raise ValueError(f"spec: '{key}' has {state[key].ndim} axes; group '{group}' names axis {axis}")
            if axes.setdefault(key, {}).setdefault(axis, group) != group:
                raise ValueError(f"spec: axis {axis} of '{key}' is claimed by '{axes[key][axis]}' and '{group}'")
            n = state[key].shape[axis]
            if sizes.setdefault(group, n) != n:
                raise ValueError(f"spec: group '{group}' spans axes of sizes {sizes[group]} and {n} ('{key}')")
    return axes, sizes


def _permute(t: Tensor, key: str, axes: dict[str, dict[int, str]], perms: dict[str, Tensor], skip: int = -1) -> Tensor:
    for axis, group in axes.get(key, {}).items():
        if axis != skip:
            t = t.index_select(axis, perms[group].to(t.device))
    return t


def apply_permutation(
    state_dict: dict[str, Tensor], spec: Spec, perms: dict[str, Tensor | list[int]]
) -> dict[str, Tensor]:
    """A new state dict with `perms[group]` applied on every (key, axis) of `spec`.

    `perms[group][i] = j` means new unit i is old unit j (`index_select`). Other entries are copied.
    """
    axes, sizes = _axes_by_key(spec, state_dict)
    p = {g: torch.as_tensor(perms[g], dtype=torch.long) for g in spec}
    for g, n in sizes.items():
        if sorted(p[g].tolist()) != list(range(n)):
            raise ValueError(f"perms: '{g}' is not a permutation of range({n})")
    return {k: _permute(v, k, axes, p).clone() for k, v in state_dict.items()}


def weight_matching(
    state_a: dict[str, Tensor],
    state_b: dict[str, Tensor],
    spec: Spec,
    max_iter: int = 100,
    seed: int = 0,
    cost_keys: Iterable[str] | None = None,
) -> dict[str, Tensor]:
    """Permutations `{group: LongTensor}` that bring `state_b` closest to `state_a` (see module doc).

    Only the state keys in `cost_keys` enter the similarity (None: every key of `spec`); a group none of
    whose keys count keeps the identity.
    """
    axes, sizes = _axes_by_key(spec, state_a)
    cost = set(axes) if cost_keys is None else set(cost_keys) & set(axes)
    sa = {k: v.detach().cpu().double() for k, v in state_a.items() if k in axes}
    sb = {k: v.detach().cpu().double() for k, v in state_b.items() if k in axes}
    perms = {g: torch.arange(n) for g, n in sizes.items()}
    rng = np.random.default_rng(seed)
    groups = list(spec)
    for it in range(max_iter):
        improved = False  # first sweep in spec order (input to output: each group sees solved inputs)
        for gi in range(len(groups)) if it == 0 else rng.permutation(len(groups)):
            g = groups[gi]
            sim = torch.zeros(sizes[g], sizes[g], dtype=torch.float64)
            for key, axis in (e for e in spec[g] if e[0] in cost):
                wa = sa[key].movedim(axis, 0).reshape(sizes[g], -1)
                wb = _permute(sb[key], key, axes, perms, skip=axis).movedim(axis, 0).reshape(sizes[g], -1)
                sim += wa @ wb.T
            rows, cols = linear_sum_assignment(sim.numpy(), maximize=True)
            new = torch.as_tensor(cols[np.argsort(rows)], dtype=torch.long)
            idx = torch.arange(sizes[g])
            gain = float(sim[idx, new].sum() - sim[idx, perms[g]].sum())
            if gain > 1e-12 * max(1.0, float(sim.abs().max())):
                perms[g], improved = new, True
        if not improved:
            break
    return perms


def align(
    model_a: nn.Module,
    model_b: nn.Module,
    method: str = "weights",
    spec: Spec | None = None,
    max_iter: int = 100,
    seed: int = 0,
    return_perms: bool = False,
    cost_keys: Iterable[str] | None = None,
) -> nn.Module | tuple[nn.Module, dict[str, Tensor]]:
    """A permuted copy of `model_b` computing the same function, with weights closest to `model_a`.

    Weight matching (Ainsworth et al. 2023) over `spec`, by default `model_a.permutation_spec()`, with
    a similarity over the state keys `cost_keys` (default: the parameter names, no BN statistics; every
    key of `spec` is permuted all the same). With `return_perms=True` also returns `{group: LongTensor}`
    (new unit i = old unit perms[g][i]). The inputs are not modified.
    """
    check_choice("method", method, ("weights",))
    check_pair(model_a, model_b)
    if spec is None:
        if not hasattr(model_a, "permutation_spec"):
            raise ValueError(f"spec: {type(model_a).__name__} has no permutation_spec(); pass spec explicitly")
        spec = model_a.permutation_spec()
    check_int("max_iter", max_iter)
    cost_keys = [n for n, _ in model_a.named_parameters()] if cost_keys is None else cost_keys
    state_b = model_b.state_dict()
    perms = weight_matching(model_a.state_dict(), state_b, spec, max_iter, seed, cost_keys)
    aligned = copy.deepcopy(model_b)
    aligned.load_state_dict(apply_permutation(state_b, spec, perms))
    return (aligned, perms) if return_perms else aligned

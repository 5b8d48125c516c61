"""`data.ood`: named out-of-distribution test sets, built beside the clean test set and standardised like it.

`data.ood` is a list of specs, each naming one shifted copy of the test set (as many samples, the same labels'
distribution), which the pipeline evaluates for every endpoint and along every path:

- mnist1d: `{name, seed, <knob>: value, ...}` with the generator's own knobs (`MNIST1D_KNOBS`; unset ones keep
  the clean data's values), e.g. `{name: noisy, iid_noise_scale: 0.1, corr_noise_scale: 0.5}`; without knobs, a
  fresh draw of the clean distribution. `seed` (default 1,
  never the clean data's `gen_seed`) seeds the generator. The generator scales a dataset by that dataset's own
  mean and std; the shifted samples are scaled with the clean dataset's instead, so a shift is not undone by it
  (stronger noise stays stronger). Cached beside the clean data under `<root>/mnist1d/`.
- image datasets (`IMAGE_DATASETS`): `{name, corruption, severity, seed}`, a corruption of `corruptions.py` at
  severity 1-5 applied to the clean test images in [0, 1] (`seed` default 0; `name` default
  `<corruption>_<severity>`), e.g. `{corruption: gaussian_noise, severity: 3}`.

An mnist1d spec without knobs may say `control: true`: a set drawn exactly like a shifted one (its own seed, the
clean data's scaling) but from the clean distribution, so its gap to the test accuracy is what an OOD gap shows
with no shift at all (the sampling noise of two 1,000-sample sets, and any artefact of building a set this way).
Controls are evaluated like every set but left out of the summary `ood_gap`.

`check_ood` validates specs (one-line errors naming `data.ood[i].<key>`); `shifted_test_sets` builds them
unstandardised, for `core.build_bundle` to standardise with the train-pool statistics of the clean splits.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import check_choice, check_int, check_number, fail, is_int
from .core import Split
from .corruptions import CORRUPTIONS, corrupt
from .tabular import atomic_save, mnist1d_args, mnist1d_cache_path
from .vision import VISION

MNIST1D_KNOBS = ("iid_noise_scale", "corr_noise_scale", "scale_coeff", "max_translation", "shear_scale", "padding")
IMAGE_DATASETS: tuple[str, ...] = ("digits", *VISION)
MNIST1D_SEED, IMAGE_SEED = 1, 0  # default seeds of a shifted set
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _check_knob(key: str, value: Any) -> Any:
    knob = key.rsplit(".", 1)[-1]
    if knob == "max_translation":
        return check_int(key, value, 1)
    if knob == "padding":
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) for v in value)
        if not (ok and 0 <= value[0] <= value[1]):
            fail(key, value, "must be [low, high]: integers with 0 <= low <= high")
        return [int(v) for v in value]
    if knob == "scale_coeff" and check_number(key, value, 0) >= 2:
        fail(key, value, "must be a number in [0, 2) (each sample's scale 1 + c(u - 0.5) stays > 0)")
    return check_number(key, value, 0)


def _check_spec(dataset: str, spec: Any, where: str, options: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        fail(where, spec, "must be an object, e.g. {name: noisy, ...}")
    if dataset == "mnist1d":
        if "corruption" in spec:
            knobs = ", ".join(MNIST1D_KNOBS)
            fail(f"{where}.corruption", spec["corruption"], f"not available for mnist1d; its shifted sets take {knobs}")
        allowed = ("name", "seed", "control", *MNIST1D_KNOBS)
    else:
        allowed = ("name", "corruption", "severity", "seed")
    for key in spec:
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown key; {dataset} shifted sets take {', '.join(allowed)}")
    out: dict[str, Any] = {}
    if dataset == "mnist1d":
        out["seed"] = check_int(f"{where}.seed", spec.get("seed", MNIST1D_SEED), 0, 2**32 - 1)
        gen_seed = options.get("gen_seed", 42)
        if out["seed"] == gen_seed:
            fail(f"{where}.seed", out["seed"], f"must differ from data.options.gen_seed={gen_seed} (the clean data's)")
        out.update({k: _check_knob(f"{where}.{k}", spec[k]) for k in MNIST1D_KNOBS if k in spec})
        out["control"] = spec.get("control", False)
        if not isinstance(out["control"], bool):
            fail(f"{where}.control", out["control"], "must be true or false")
        if out["control"] and any(k in spec for k in MNIST1D_KNOBS):
            knobs = ", ".join(k for k in MNIST1D_KNOBS if k in spec)
            fail(f"{where}.control", True, f"a control set takes no generator knobs (got {knobs}): it has no shift")
        default_name = None
    else:
        for key in ("corruption", "severity"):
            if key not in spec:
                raise ValueError(f"{where}.{key}: missing; e.g. {{corruption: gaussian_noise, severity: 3}}")
        out["corruption"] = check_choice(f"{where}.corruption", spec["corruption"], CORRUPTIONS)
        out["severity"] = check_int(f"{where}.severity", spec["severity"], 1, 5)
        out["seed"] = check_int(f"{where}.seed", spec.get("seed", IMAGE_SEED), 0)
        out["control"] = False
        default_name = f"{out['corruption']}_{out['severity']}"
    name = spec.get("name", default_name)
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        fail(f"{where}.name", name, "must be 1-64 letters, digits, _ or - (it names the set in results and summaries)")
    return {"name": name, **out}


def check_ood(dataset: str, specs: Any, options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The validated specs of `data.ood` for `dataset` (defaults filled in); a ValueError of one line otherwise."""
    specs = [] if specs is None else specs
    if not isinstance(specs, (list, tuple)):
        fail("data.ood", specs, "must be a list of shifted test sets, e.g. [{corruption: contrast, severity: 3}]")
    if specs and dataset not in ("mnist1d", *IMAGE_DATASETS):
        fail("data.ood", list(specs), f"{dataset} has no shifted test sets; they exist for mnist1d (generator knobs) "
             f"and {', '.join(IMAGE_DATASETS)} (image corruptions)")  # fmt: skip
    out: list[dict[str, Any]] = []
    for i, spec in enumerate(specs):
        checked = _check_spec(dataset, spec, f"data.ood[{i}]", options or {})
        if any(o["name"] == checked["name"] for o in out):
            fail(f"data.ood[{i}].name", checked["name"], "duplicate; every shifted set needs its own name")
        out.append(checked)
    return out


def shifted_test_sets(
    dataset: str, root: str | Path, test: Split, specs: list[dict[str, Any]], options: Mapping[str, Any]
) -> dict[str, Split]:
    """`{name: (x, y)}`, unstandardised like `test` (the clean test split as the dataset's reader returns it)."""
    if dataset == "mnist1d":
        return {s["name"]: mnist1d_shifted(root, s, **options) for s in specs}
    return {s["name"]: (corrupt(test[0], s["corruption"], s["severity"], s["seed"]), test[1]) for s in specs}


# --- mnist1d ----------------------------------------------------------------------------------------------------
def mnist1d_samples(args: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Unscaled samples of the mnist1d generator for `args`, in its own order, and its position permutation (None
    without `shuffle_seq`): what `make_dataset` draws (seeded by `args["seed"]`, `num_samples // 10` per class,
    shuffled) before it scales the whole set by its mean and std. The global RNGs it reseeds are restored."""
    from mnist1d.data import get_templates
    from mnist1d.transform import transform
    from mnist1d.utils import ObjectView, set_seed

    view, templates = ObjectView(dict(args)), get_templates()
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        set_seed(view.seed)
        xs, ys = [], []
        for label in range(len(templates["y"])):
            for _ in range(view.num_samples // len(templates["y"])):
                xs.append(transform(templates["x"][label], templates["t"], view)[0])
                ys.append(templates["y"][label])
        order = np.random.permutation(len(ys))
        perm = np.random.permutation(view.final_seq_length) if view.shuffle_seq else None
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x, y = np.stack(xs)[order], np.stack(ys)[order]
    return (x if perm is None else x[..., perm]), y, perm


def _cached(path: Path, make) -> dict[str, torch.Tensor]:
    if path.exists():
        return torch.load(path, weights_only=True)
    tensors = make()
    atomic_save(tensors, path)
    return tensors


def mnist1d_scale(root: str | Path, clean: dict[str, Any]) -> dict[str, torch.Tensor]:
    """How the generator scaled the clean dataset of `clean` args: `mean`, `std` (float64 scalars) and, with
    `shuffle_seq`, the position permutation `perm` it applied. Cached (one generator pass)."""

    def make() -> dict[str, torch.Tensor]:
        x, _, perm = mnist1d_samples(clean)
        out = {"mean": torch.tensor(x.mean(), dtype=torch.float64), "std": torch.tensor(x.std(), dtype=torch.float64)}
        return out if perm is None else {**out, "perm": torch.from_numpy(perm)}

    path = mnist1d_cache_path(root, clean)
    return _cached(path.with_name(path.stem + "_scale.pt"), make)


def mnist1d_shifted(root: str | Path, spec: dict[str, Any], **options: Any) -> Split:
    """The shifted mnist1d test set of a checked spec: as many samples as the clean test split, x (N, 1, L) in the
    clean data's units. Cached under `<root>/mnist1d/`."""
    clean = mnist1d_args(**options)
    num = clean["num_samples"] - round(clean["train_split"] * clean["num_samples"])  # as raw_mnist1d splits
    knobs = {k: v for k, v in spec.items() if k in MNIST1D_KNOBS}
    args = dict(clean, **knobs, seed=spec["seed"], num_samples=-(-num // 10) * 10, train_split=1.0, shuffle_seq=False)

    def make() -> dict[str, torch.Tensor]:
        scale = mnist1d_scale(root, clean)
        x, y, _ = mnist1d_samples(args)
        if "perm" in scale:
            x = x[..., scale["perm"].numpy()]
        x = (x - scale["mean"].item()) / scale["std"].item()
        return {"x": torch.from_numpy(x[:num]).float().unsqueeze(1), "y": torch.from_numpy(y[:num]).long()}

    digest = hashlib.sha1(json.dumps({"clean": clean, "shifted": args}, sort_keys=True).encode()).hexdigest()[:12]
    tensors = _cached(mnist1d_cache_path(root, clean).parent / f"mnist1d_ood_{digest}.pt", make)
    return tensors["x"], tensors["y"]

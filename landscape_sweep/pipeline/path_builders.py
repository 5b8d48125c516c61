"""The builders of the path methods: one function per `results.PATH_METHODS` entry's `builder`, and the dispatch.

`results.PATH_METHODS` names each method and what it needs; this module attaches what builds it. A builder takes
the two endpoints, the method's registry entry, the cell's analysis data, `landscape.connectivity` and the seed,
and returns a path that `landscape.paths.evaluate_path` takes: a model pair (segment), a `RepairedPath` or a
fitted `Curve`. `AnalysisData` (the loaders the builders and the cell's measurements use) lives here, below
`measures.py`, which builds it. `check_methods` is the pre-check's half: every configured method has a builder and
the model can be aligned when the method aligns, so a method that cannot run fails before any training, in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from landscape_sweep.checks import fail
from landscape_sweep.data import TensorLoader
from landscape_sweep.landscape import align, fit_curve
from landscape_sweep.landscape.repair import RepairedPath
from landscape_sweep.models import MODELS
from landscape_sweep.results import PATH_METHODS, PathMethod

# REPAIR's unit statistics: the first samples of the (seeded, shuffled) probe subset, held as one batch
REPAIR_SAMPLES = 2000
Builder = Callable[..., Any]


@dataclass
class AnalysisData:
    """The loaders a cell's analysis uses, built once per cell.

    `probe`: a seeded subset of the (un-augmented) training split for Hessian and sharpness estimates;
    `train`/`test`: the full splits in evaluation batches (paths, BN recomputation);
    `curve_train`: the training split reshuffled every epoch in minibatches of `curve.batch_size`, with the
    endpoints' augmentation, on which Bezier/PolyChain curves are fitted; `ood`: the shifted test sets by name.
    """

    probe: TensorLoader
    train: TensorLoader
    test: TensorLoader
    curve_train: TensorLoader
    ood: dict[str, TensorLoader] = field(default_factory=dict)
    ood_controls: tuple[str, ...] = ()  # the OOD sets that are controls (no shift): left out of `ood_gap`


def segment(a: nn.Module, b: nn.Module, m: PathMethod, ad: AnalysisData, conn: dict[str, Any], seed: int) -> Any:
    """The straight segment between the endpoints as they were trained."""
    return a, b


def aligned_segment(
    a: nn.Module, b: nn.Module, m: PathMethod, ad: AnalysisData, conn: dict[str, Any], seed: int
) -> Any:
    """The segment to `b` permuted onto `a` by weight matching."""
    return a, align(a, b, seed=seed)


def repaired_segment(
    a: nn.Module, b: nn.Module, m: PathMethod, ad: AnalysisData, conn: dict[str, Any], seed: int
) -> RepairedPath:
    """The aligned segment with REPAIR's statistics renormalisation, its unit statistics measured on the first
    `REPAIR_SAMPLES` of the probe subset."""
    stats = ad.probe.x[:REPAIR_SAMPLES], ad.probe.y[:REPAIR_SAMPLES]
    return RepairedPath(a, align(a, b, seed=seed), stats)


def fitted_curve(a: nn.Module, b: nn.Module, m: PathMethod, ad: AnalysisData, conn: dict[str, Any], seed: int) -> Any:
    """The method's curve kind (`m.curve`) fitted with `landscape.connectivity.curve`'s budget on `ad.curve_train`
    (whose minibatches already have `curve.batch_size`)."""
    cc = conn["curve"]
    return fit_curve(
        a, b, ad.curve_train, kind=m.curve, num_bends=cc["num_bends"], max_epochs=cc["max_epochs"], tol=cc["tol"],
        window=cc["window"], patience=cc["patience"], min_epochs=cc["min_epochs"], floor=cc["floor"], lr=cc["lr"],
        batch_size=cc["batch_size"], seed=seed,
    )  # fmt: skip


def builder(method: str) -> Builder:
    """The function that builds `method`'s path (its registry entry's `builder`, a function of this module)."""
    if method not in PATH_METHODS:
        fail("landscape.connectivity.methods", method, f"is not a path method; known: {', '.join(PATH_METHODS)}")
    name = PATH_METHODS[method].builder
    fn = globals().get(name)
    if not callable(fn) or name.startswith("_"):
        fail(f"results.PATH_METHODS[{method!r}].builder", name, "is no function of pipeline/path_builders.py")
    return fn


def check_methods(methods: Iterable[str], arch: str) -> None:
    """Every method has a builder, and one that aligns is asked of a model with a `permutation_spec()`."""
    for method in methods:
        builder(method)
        model = MODELS.get(arch)
        if PATH_METHODS[method].aligned and model is not None and not hasattr(model, "permutation_spec"):
            fail("landscape.connectivity.methods", method, f"aligns by weight matching; model {arch} has no "
                 "permutation_spec()")  # fmt: skip


def fit_path(a: nn.Module, b: nn.Module, method: str, ad: AnalysisData, conn: dict[str, Any], seed: int) -> Any:
    """The path of `method` between two endpoints, built by its registry entry's builder."""
    return builder(method)(a, b, PATH_METHODS[method], ad, conn, seed)

"""results.json, the one contract between a cell (pipeline/) and the sweep report (report/).

This module owns everything about it: the typed records (`CellResult`, `Endpoint`, `PathEntry`), the names of
the measures, the one summary of a measure over endpoints or endpoint pairs (`Stat`, `cell_stats`), reading and
writing (atomic: temp file in the same directory + rename) with schema versioning (files of schema 1 are read and
upgraded), and how job directories of a sweep are found. `docs/results.md` documents every field; a test checks
it against the records here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landscape_sweep.files import atomic_write_text, read_regular_text

SCHEMA = 2
RESULTS_NAME = "results.json"

# --- names of the measures -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathMethod:
    """One way of joining two endpoints (config `landscape.connectivity.methods`): the one place it is described.

    `builder`: the name of the function in `pipeline/path_builders.py` that builds or fits its path (the pipeline
    attaches it; report/ never runs it); `aligned`: it aligns the second endpoint to the first by weight matching,
    so the model needs a `permutation_spec()`; `curve`: the `landscape.curves` kind it fits (None: not a fitted
    curve); `label`: how the progress line and the dashboard name it (default: its name); `note`: what the report's
    column list adds to the name."""

    name: str
    builder: str
    aligned: bool = False
    curve: str | None = None
    label: str = ""
    note: str = ""

    @property
    def fitted(self) -> bool:
        """A trained curve (its record has `fit`, its path a curvature and a plane surface)."""
        return self.curve is not None

    @property
    def shown(self) -> str:
        """The name the progress line and the dashboard show: its label, else its name."""
        return self.label or self.name


# the path methods, in their usual order (report columns, progress line, dashboard panels); adding one is one entry
# here plus its builder function in pipeline/path_builders.py
PATH_METHODS: dict[str, PathMethod] = {
    m.name: m
    for m in (
        PathMethod("linear", "segment"),
        PathMethod("linear_aligned", "aligned_segment", aligned=True, note="weight matching"),
        PathMethod("linear_aligned_repair", "repaired_segment", aligned=True, note="REPAIR"),
        PathMethod("bezier", "fitted_curve", curve="bezier"),
        PathMethod("polychain", "fitted_curve", curve="polychain"),
    )
}


def curve_methods() -> tuple[str, ...]:
    """The path methods that fit a curve (`PathMethod.fitted`), in registry order."""
    return tuple(name for name, m in PATH_METHODS.items() if m.fitted)


def method_label(method: str) -> str:
    """How the progress line and the dashboard name a path method (its name when it is not registered)."""
    return PATH_METHODS[method].shown if method in PATH_METHODS else method


# sharpness kind (config `landscape.sharpness.kinds`) -> key in an endpoint's `sharpness`
SHARPNESS_KINDS = {
    "worst": "worst_case",
    "average": "average_case",
    "adaptive_worst": "adaptive_worst_case",
    "adaptive_average": "adaptive_average_case",
}
ENDPOINT_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "gen_gap")
# `average_case_ratio` (read when present): average_case / (σ²/2 · hessian_trace), what the antithetic average-case
# sharpness measures beyond the quadratic term
SHARPNESS_MEASURES = ("hessian_top_eig", "hessian_trace", *SHARPNESS_KINDS.values(), "average_case_ratio")
# per-block curvature (`landscape.sharpness.per_block`): per endpoint `block/<block>/<measure>` for each block of the
# model, and the depth-comparable `block/<summary>` (`landscape.blocks.concentration`)
BLOCK_MEASURES = {"hessian_top_eig": "top_eig", "hessian_trace": "trace"}  # measure -> key of a block record
BLOCK_SUMMARIES = ("first_trace_fraction", "last_trace_fraction", "sharpest_position")
BARRIER_MEASURES = ("loss_barrier", "error_barrier", "test_loss_barrier", "test_error_barrier")
PATH_MEASURES = (
    *BARRIER_MEASURES,
    *(f"{b}_mean" for b in BARRIER_MEASURES),
    "path_length",
    "endpoint_distance",
    "path_curvature",
    "arc_chord_ratio",
    "max_hessian_top_eig_along_path",
    "max_train_loss",  # derived: the highest loss along the path (beside the barrier, which is relative to the chord)
    "max_test_loss",
)
# out-of-distribution sets (`data.ood`): per endpoint `ood/<name>/<measure>` and `ood_gap` (test_acc minus the mean
# accuracy over the sets); per path `<method>/ood/<name>/<measure>`
OOD_ENDPOINT_MEASURES = ("loss", "acc", "gap")
# instability analysis (`endpoints.mode=spawn`, Frankle et al. 2020): per spawn epoch k the barriers of the linear
# path between the children, summarised over child pairs as `instability/<k>/<measure>`; the cell is stable at k
# when the mean over pairs of STABLE_MEASURE is below STABLE_THRESHOLD (the paper's 2 % test error)
INSTABILITY_MEASURES = (*BARRIER_MEASURES, *(f"{b}_mean" for b in BARRIER_MEASURES))
STABLE_MEASURE = "test_error_barrier_mean"
STABLE_THRESHOLD = 0.02
OOD_PATH_MEASURES = ("loss_barrier", "error_barrier")
# config keys that do not change what a cell computes: excluded from its identity (config hash) and from the
# hyperparameters a report compares cells by
RUN_ONLY = (
    "paths",
    "logger",
    "tags",
    "task_name",
    "report",
    "data.root",
    "data.download",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.checkpoint_every_s",
    "trainer.threads",
    "endpoints.parallel",  # how the endpoints are scheduled, not what they are (vmap: same weights within 1e-5)
)
CELL_KEYS = ("dataset", "arch", "depth", "width", "norm", "optimizer", "num_params", "train_size", "label_noise")


# --- records ---------------------------------------------------------------------------------------------------
class _Record:
    """Shared (de)serialisation: known fields by name, unknown keys kept in `extra` and written back."""

    extra: dict[str, Any]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("transient")} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        fields = [f for f in dataclasses.fields(self) if f.name != "extra" and not f.metadata.get("transient")]
        return {**{f.name: getattr(self, f.name) for f in fields}, **self.extra}


@dataclass
class Endpoint(_Record):
    """One independently trained network of a cell: final metrics, sharpness, trajectory."""

    seed: int
    init_seed: int | None = None  # seed of the initialisation (a spawned child: the parent's)
    data_seed: int | None = None  # seed of the data order and augmentation
    spawn_epoch: int | None = None  # a spawned child: the parent's epoch it started from (None: independent)
    checkpoint: str | None = None
    epochs: int | None = None
    train_time_s: float | None = None
    train_loss: float | None = None
    train_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    stop: dict[str, Any] | None = None  # trainer.stop_at criterion and the epoch it was reached (None: not set)
    sharpness: dict[str, Any] = field(default_factory=dict)
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    loss_surface: dict[str, Any] | None = None
    ood: dict[str, dict[str, Any]] = field(default_factory=dict)  # {name: {loss, acc[, control]}} (data.ood)
    extra: dict[str, Any] = field(default_factory=dict)

    def measure(self, name: str) -> float | None:
        """An endpoint measure by name (ENDPOINT_METRICS, SHARPNESS_MEASURES, `ood/<name>/<measure>`, `ood_gap`)."""
        if name == "gen_gap":
            return _diff(self.train_acc, self.test_acc)
        if name == "ood_gap":  # over the shifted sets: a control set (no shift) measures the gap's noise instead
            accs = [v.get("acc") for v in self.ood.values() if not v.get("control")]
            return _diff(self.test_acc, sum(accs) / len(accs)) if accs and all(map(_finite, accs)) else None
        if name.startswith("ood/"):
            set_name, _, key = name[4:].rpartition("/")
            values = self.ood.get(set_name) or {}
            return _diff(self.test_acc, values.get("acc")) if key == "gap" else values.get(key)
        if name.startswith("block/"):
            block, _, key = name[6:].rpartition("/")
            if not block:
                return (self.sharpness.get("block_concentration") or {}).get(key)
            rec = next((r for r in self.sharpness.get("blocks") or [] if r.get("name") == block), {})
            return rec.get(BLOCK_MEASURES.get(key, key))
        if name == "hessian_top_eig":
            eigs = self.sharpness.get("hessian_top_eigs") or []
            return eigs[0] if eigs else None
        if name in SHARPNESS_MEASURES:
            return self.sharpness.get(name)
        return getattr(self, name)


@dataclass
class PathEntry(_Record):
    """One path (method) between one pair of endpoints, evaluated at `t` on train and test."""

    pair: list[int]
    method: str
    t: list[float] = field(default_factory=list)
    train_loss: list[float] | None = None
    train_acc: list[float] | None = None
    test_loss: list[float] | None = None
    test_acc: list[float] | None = None
    loss_barrier: float | None = None
    error_barrier: float | None = None
    test_loss_barrier: float | None = None
    test_error_barrier: float | None = None
    loss_barrier_mean: float | None = None
    error_barrier_mean: float | None = None
    test_loss_barrier_mean: float | None = None
    test_error_barrier_mean: float | None = None
    path_length: float | None = None
    endpoint_distance: float | None = None
    path_curvature: float | None = None
    arc_chord_ratio: float | None = None
    sharpness_along_path: dict[str, Any] | None = None  # t, hessian_top_eig (lists); per_block: blocks
    fit: dict[str, Any] | None = None  # fitted curves: epochs, final_loss, converged, history
    plane_surface: dict[str, Any] | None = None
    ood: dict[str, dict[str, Any]] | None = None  # {name: {loss, acc (per t), loss_barrier, error_barrier}}
    repair: dict[str, Any] | None = None  # linear_aligned_repair: layers, units, stats_samples, std_ratio per t
    time_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def measure(self, name: str) -> float | None:
        """A path measure by name (PATH_MEASURES or `ood/<name>/<measure>`); `max_train_loss`/`max_test_loss`: the
        highest loss at any evaluated t (None when one is not finite)."""
        if name.startswith("ood/"):
            set_name, _, key = name[4:].rpartition("/")
            return ((self.ood or {}).get(set_name) or {}).get(key)
        if name == "max_hessian_top_eig_along_path":
            eigs = [v for v in (self.sharpness_along_path or {}).get("hessian_top_eig", []) if _finite(v)]
            return max(eigs) if eigs else None
        if name in ("max_train_loss", "max_test_loss"):  # None when a point's loss is not finite: no max to give
            losses = getattr(self, name.removeprefix("max_")) or []
            return max(losses) if losses and all(map(_finite, losses)) else None
        return getattr(self, name)


@dataclass
class CellResult(_Record):
    """The whole results.json of one cell (one Hydra job)."""

    status: str | None = None  # completed | failed | diverged (report only: missing | invalid)
    error: str | None = None
    config_hash: str | None = None
    train_hash: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    cell: dict[str, Any] = field(default_factory=dict)
    endpoints: list[Endpoint] = field(default_factory=list)
    connectivity: list[PathEntry] = field(default_factory=list)
    instability: list[dict[str, Any]] | None = None  # endpoints.mode=spawn: one record per spawn epoch
    stable_epoch: int | None = None  # earliest spawn epoch whose children are linearly connected (None: none)
    timing_s: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    schema: int = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)
    job: str | None = field(default=None, metadata={"transient": True})  # the job dir in a sweep (report only)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellResult:
        d = upgrade(d)
        r = super().from_dict(d)
        r.endpoints = [e if isinstance(e, Endpoint) else Endpoint.from_dict(e) for e in r.endpoints]
        r.connectivity = [p if isinstance(p, PathEntry) else PathEntry.from_dict(p) for p in r.connectivity]
        return r

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["endpoints"] = [e.to_dict() for e in self.endpoints]
        out["connectivity"] = [p.to_dict() for p in self.connectivity]
        return out

    def methods(self) -> list[str]:
        return list(dict.fromkeys(p.method for p in self.connectivity))

    def ood_names(self) -> list[str]:
        """Names of the out-of-distribution sets measured, in order (endpoints first, then paths)."""
        names = [n for e in self.endpoints for n in e.ood] + [n for p in self.connectivity for n in p.ood or {}]
        return list(dict.fromkeys(names))

    def block_names(self) -> list[str]:
        """Names of the blocks whose curvature was measured (`sharpness.blocks`), in forward order."""
        return list(dict.fromkeys(r.get("name") for e in self.endpoints for r in e.sharpness.get("blocks") or []))


def upgrade(d: dict[str, Any]) -> dict[str, Any]:
    """A results dict of any known schema as the current schema (schema 1: no fit blocks, unlabeled trajectory)."""
    schema = d.get("schema", 1)
    if schema == SCHEMA:
        return d
    if schema != 1:
        raise ValueError(f"schema={schema!r}: unknown results schema; this version reads 1 and {SCHEMA}")
    d = {**d, "schema": SCHEMA, "upgraded_from": 1}
    d["endpoints"] = [
        {**e, "trajectory": [{"weights": "running", **p} for p in e.get("trajectory") or []]}
        for e in d.get("endpoints") or []
    ]
    return d


# --- validation (the report's reader: a file that fails is listed as `invalid`, never dropped) --------------------
STATUSES = ("completed", "failed", "diverged")
_NUM_TYPES = frozenset((int, float, type(None)))  # exact types: bool is not a number here; one test per list item
_KINDS = {  # kind -> (test, what it must be)
    "num": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)), "a number or null"),
    "nums": (
        lambda v: v is None or (isinstance(v, list) and all(map(_NUM_TYPES.__contains__, map(type, v)))),
        "a list of numbers",
    ),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "str?": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "dict?": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "list?": (lambda v: v is None or isinstance(v, list), "a list or null"),
}
_REQUIRED = ("seed", "pair", "method")
_TOP = {"error": "str?", "endpoints": "list", "connectivity": "list", "instability": "list?", "stable_epoch": "num"}
_TOP |= dict.fromkeys(("config", "cell", "timing_s", "versions"), "dict")
_CELL = dict.fromkeys(("depth", "width", "num_params", "train_size", "label_noise"), "num")
_ENDPOINT = {"seed": "int", "stop": "dict?", "sharpness": "dict", "trajectory": "list", "ood": "dict"} | dict.fromkeys(
    ("epochs", "train_time_s", "train_loss", "train_acc", "test_loss", "test_acc"), "num"
)
_SHARPNESS = {"hessian_top_eigs": "nums"} | dict.fromkeys(
    ("hessian_trace", "analysis_size", *SHARPNESS_KINDS.values(), "average_case_ratio"), "num"
)
_PATH = (
    {"pair": "nums", "method": "str", "sharpness_along_path": "dict?"}
    | dict.fromkeys(("fit", "ood", "repair"), "dict?")
    | dict.fromkeys(("t", "train_loss", "train_acc", "test_loss", "test_acc"), "nums")
    | dict.fromkeys((*(m for m in PATH_MEASURES if not m.startswith("max_")), "time_s"), "num")
)
_INSTABILITY = {"spawn_epoch": "int", "children": "list", "pairs": "list"}
_INSTABILITY_PAIR = {"pair": "nums"} | dict.fromkeys(INSTABILITY_MEASURES, "num")
_OOD_ENDPOINT = dict.fromkeys(("loss", "acc"), "num")
_OOD_PATH = dict.fromkeys(("loss", "acc"), "nums") | dict.fromkeys(OOD_PATH_MEASURES, "num")
_BLOCK = {"name": "str"} | dict.fromkeys(("n_params", *BLOCK_MEASURES.values()), "num")


def _check(node: Any, spec: dict[str, str], where: str) -> str | None:
    """The first field of `node` that `spec` ({key: kind}) rejects, as `<where>.<key>: must be …, got …`."""
    if not isinstance(node, dict):
        return f"{where}: must be an object, got {type(node).__name__}"
    for key, kind in spec.items():
        name = f"{where}.{key}" if where else key
        if key not in node:
            if key in _REQUIRED:
                return f"{name}: missing"
            continue
        test, what = _KINDS[kind]
        if not test(node[key]):
            return f"{name}: must be {what}, got {type(node[key]).__name__} {json.dumps(node[key], default=str)[:40]}"
    return None


def _parts(d: dict[str, Any]) -> Iterable[tuple[Any, dict[str, str], str]]:
    """(node, spec, where) of every part of a results dict, lazily: a part is only reached if those before pass."""
    yield d, _TOP, ""
    yield d.get("cell", {}), _CELL, "cell"
    yield d.get("timing_s", {}), dict.fromkeys(d.get("timing_s", {}), "num"), "timing_s"
    for i, e in enumerate(d.get("endpoints", [])):
        yield e, _ENDPOINT, f"endpoints[{i}]"
        yield e.get("sharpness", {}), _SHARPNESS, f"endpoints[{i}].sharpness"
        blocks = e.get("sharpness", {}).get("blocks")
        if blocks is not None:
            yield {"blocks": blocks}, {"blocks": "list"}, f"endpoints[{i}].sharpness"
            for j, rec in enumerate(blocks):
                yield rec, _BLOCK, f"endpoints[{i}].sharpness.blocks[{j}]"
        for name, values in (e.get("ood") or {}).items():
            yield values, _OOD_ENDPOINT, f"endpoints[{i}].ood.{name}"
    for i, rec in enumerate(d.get("instability") or []):
        yield rec, _INSTABILITY, f"instability[{i}]"
        for j, p in enumerate(rec.get("pairs", [])):
            yield p, _INSTABILITY_PAIR, f"instability[{i}].pairs[{j}]"
    for i, p in enumerate(d.get("connectivity", [])):
        yield p, _PATH, f"connectivity[{i}]"
        for name, values in (p.get("ood") or {}).items():
            yield values, _OOD_PATH, f"connectivity[{i}].ood.{name}"


def validate_results(d: Any) -> str | None:
    """Why `d` (a parsed results.json) is not a results record this version reads, or None when it is: a known
    schema and status, and the types of the fields the report reads. One line naming the field."""
    if not isinstance(d, dict):
        return f"must be a JSON object, got {type(d).__name__}"
    schema = d.get("schema", 1)
    if isinstance(schema, bool) or schema not in (1, SCHEMA):
        return f"schema={schema!r}: unknown results schema; this version reads 1 and {SCHEMA}"
    if d.get("status") not in STATUSES:
        return f"status={d.get('status')!r}: must be one of {', '.join(STATUSES)}"
    return next(filter(None, (_check(*part) for part in _parts(d))), None)


# --- summaries -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (NaN for n < 2) and number of finite values of one measure, and the standard
    error of the mean with the degrees of freedom of its t interval (`ci95`): over endpoints (independent networks)
    `std / √n` with n − 1; over endpoint pairs, which share endpoints, the endpoint jackknife (`pair_jackknife_se`)
    with K − 1 for K endpoints. `std` describes the spread of the values; `se` is the error of `mean`."""

    mean: float
    std: float
    n: int
    se: float = math.nan
    dof: int = 0

    @property
    def stderr(self) -> float:
        """`std / √n`, whatever the values are: the standard error only where they are independent (use `se`)."""
        return self.std / math.sqrt(self.n) if self.n >= 2 else math.nan

    @property
    def ci95(self) -> tuple[float, float]:
        """`mean ± t(0.975, dof)·se`: (NaN, NaN) without a standard error."""
        if not (math.isfinite(self.se) and self.dof >= 1):
            return math.nan, math.nan
        half = t975(self.dof) * self.se
        return self.mean - half, self.mean + half


@functools.lru_cache(maxsize=256)
def t975(dof: float) -> float:
    """The 97.5 % quantile of Student's t with `dof` degrees of freedom (NaN below 1): a 95 % two-sided interval."""
    if not dof >= 1:
        return math.nan
    from scipy.stats import t  # deferred: scipy.stats costs ~1 s of import time, and cells rarely need it

    return float(t.ppf(0.975, dof))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _diff(a: Any, b: Any) -> float | None:
    """a - b, or None unless both are numbers."""
    return a - b if _finite(a) and _finite(b) else None


def summarize(values: Iterable[Any]) -> Stat:
    """The one summary of a measure over independent values (endpoints): finite values only; `se = std / √n`."""
    v = [float(x) for x in values if _finite(x)]
    if not v:
        return Stat(math.nan, math.nan, 0)
    n = len(v)
    mean = math.fsum(v) / n  # fsum: exactly rounded, and ~50x faster than `statistics` (Fractions)
    if n < 2:
        return Stat(mean, math.nan, n)
    if min(v) == max(v):  # exact, as `statistics` gives (the rounded fsum/n can differ by an ulp)
        return Stat(v[0], 0.0, n, 0.0, n - 1)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
    return Stat(mean, std, n, std / math.sqrt(n), n - 1)


def pair_jackknife_se(pairs: Sequence[Sequence[Any]], values: Sequence[float]) -> tuple[float, int]:
    """(standard error, K − 1) of the mean over endpoint pairs, by leaving out one endpoint at a time with its pairs.

    The pairs of a cell share endpoints ((0,1), (0,2), (1,2)), so their values are not independent: std/√n over
    pairs understates the error of their mean by up to 2x (3 endpoints, pair values additive in endpoint effects).
    The independent units are the K endpoints; the jackknife over them, `(K−1)/K · Σ_i (U_−i − Ū)²` with U_−i the
    mean over the pairs without endpoint i, is unbiased when a pair's value is the sum of effects of its two
    endpoints (plus a constant) and conservative otherwise (Efron–Stein): with K = 3, where the data cannot tell
    endpoint effects from pair effects, up to 2x too large when pairs vary independently. (Resampling endpoints
    with replacement instead gives 0.6x the true error at K = 3 with additive effects: too small.) `pairs` holds
    any hashable endpoint labels (indices or seeds). NaN with fewer than 3 endpoints, or when leaving one out leaves
    no pair.
    """
    ok = [(tuple(p), float(v)) for p, v in zip(pairs, values) if _finite(v) and isinstance(p, (list, tuple))]
    units = sorted({u for p, _ in ok for u in p}, key=str)
    if len(units) < 3:
        return math.nan, 0
    loo = []
    for u in units:
        rest = [v for p, v in ok if u not in p]
        if not rest:
            return math.nan, 0
        loo.append(math.fsum(rest) / len(rest))
    k, centre = len(units), math.fsum(loo) / len(loo)
    if min(loo) == max(loo):  # exact 0, not the rounding of fsum/k
        return 0.0, k - 1
    return math.sqrt((k - 1) / k * math.fsum((x - centre) ** 2 for x in loo)), k - 1


def summarize_pairs(items: Iterable[tuple[Any, Any]]) -> Stat:
    """The summary of a path measure over endpoint pairs (`(pair, value)` items): mean, std and n as `summarize`,
    `se` and `dof` from the endpoint jackknife (`pair_jackknife_se`)."""
    items = list(items)
    s = summarize(v for _, v in items)
    if s.n < 2:
        return s
    se, dof = pair_jackknife_se([p for p, _ in items], [v for _, v in items])
    return dataclasses.replace(s, se=se, dof=dof)


def cell_stats(result: CellResult) -> dict[str, Stat]:
    """Every measure of a cell summarised: endpoint metrics, sharpness and OOD measures over endpoints
    (`<measure>`, `ood/<name>/<measure>`, `ood_gap`), path measures over endpoint pairs (`<method>/<measure>`,
    `<method>/ood/<name>/<measure>`), spawn mode's barriers over the child pairs of each spawn epoch
    (`instability/<k>/<measure>`) and its `stable_epoch` (n = 1). Measures without any finite value are left out.
    Each `Stat`'s `se` is the error of its mean: `std / √n` over endpoints, the endpoint jackknife over pairs."""
    out: dict[str, Stat] = {}
    ood = result.ood_names()
    endpoint = [*ENDPOINT_METRICS, *SHARPNESS_MEASURES, *(f"ood/{n}/{m}" for n in ood for m in OOD_ENDPOINT_MEASURES)]
    blocks = result.block_names()
    endpoint += [f"block/{b}/{m}" for b in blocks for m in BLOCK_MEASURES] + [f"block/{s}" for s in BLOCK_SUMMARIES]
    for name in [*endpoint, "ood_gap"] if ood else endpoint:
        out[name] = summarize(e.measure(name) for e in result.endpoints)
    for method in result.methods():
        entries = [p for p in result.connectivity if p.method == method]
        for name in (*PATH_MEASURES, *(f"ood/{n}/{m}" for n in ood for m in OOD_PATH_MEASURES)):
            out[f"{method}/{name}"] = summarize_pairs((p.pair, p.measure(name)) for p in entries)
    for rec in result.instability or []:
        for name in INSTABILITY_MEASURES:
            pairs = [(p.get("pair"), p.get(name)) for p in rec.get("pairs", [])]
            out[f"instability/{rec['spawn_epoch']}/{name}"] = summarize_pairs(pairs)
    if result.stable_epoch is not None:
        out["stable_epoch"] = summarize([result.stable_epoch])
    return {k: s for k, s in out.items() if s.n > 0}


# --- files -----------------------------------------------------------------------------------------------------
def _clean(o: Any) -> Any:
    """JSON-safe copy: non-finite floats become null (strict JSON), tuples become lists, numpy scalars floats."""
    if isinstance(o, _Record):
        o = o.to_dict()
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if hasattr(o, "item") and callable(o.item) and getattr(o, "ndim", 1) == 0:
        o = o.item()
    if hasattr(o, "tolist") and callable(o.tolist):
        return _clean(o.tolist())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_json(path: str | Path, obj: Any) -> None:
    """`obj` as strict JSON (non-finite numbers as null), written atomically."""
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | Path) -> dict[str, Any] | None:
    """The parsed file, or None when it does not exist or is unreadable (e.g. from an older crash, or not a regular
    file: `files.read_regular_text`)."""
    try:
        return json.loads(read_regular_text(path))
    except (OSError, ValueError):  # ValueError: not JSON, not UTF-8
        return None


def results_path(job_dir: str | Path) -> Path:
    return Path(job_dir) / RESULTS_NAME


def read_results(job_dir: str | Path) -> CellResult | None:
    """The cell's results (upgraded to the current schema), or None when results.json is absent or unreadable."""
    d = read_json(results_path(job_dir))
    return CellResult.from_dict(d) if d is not None else None


def write_results(job_dir: str | Path, result: CellResult) -> None:
    write_json(results_path(job_dir), result)


def job_overrides(job_dir: str | Path) -> list[str]:
    """The job's Hydra overrides (`.hydra/overrides.yaml`; [] when absent or unreadable): what defines the cell on
    the command line."""
    try:
        import yaml  # deferred: only job_overrides reads YAML; results.py stays on the standard library

        text = read_regular_text(Path(job_dir) / ".hydra" / "overrides.yaml")
        items = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: ~20x faster
    except Exception:  # absent or unreadable: the job dir name is all we have
        return []
    return [str(o) for o in items] if isinstance(items, list) else []


def job_dirs(sweep_dir: str | Path) -> list[Path]:
    """Job directories of a sweep (folders holding `.hydra/` or results.json), or the directory itself for a
    single run, in job order."""
    root = Path(sweep_dir)
    found = {p.parent for p in root.rglob(RESULTS_NAME)} | {p.parent for p in root.rglob(".hydra") if p.is_dir()}
    found = {d for d in found if "checkpoints" not in d.parts and "wandb" not in d.parts}
    if len(found) > 1:
        found.discard(root)  # the sweep dir's own .hydra (multirun.yaml) is not a cell

    def key(d: Path) -> tuple:
        rel = d.relative_to(root).parts
        return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in rel)

    return sorted(found, key=key)

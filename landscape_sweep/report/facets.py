"""Which cells a figure may put together: the no-silent-pooling rule, and the user's `report.facet`/`report.select`.

A figure shows some cell fields (a heatmap: optimizer, depth, width). Every other hyperparameter the sweep varies
(`correlation.varied`: cell fields and `cfg:` config columns such as `cfg:optimizer.lr`) that takes more than one
value among the cells one mark of the figure would average is a *facet*: the figure gets one panel (or page) per
value combination instead, so nothing is averaged over it silently. Replicate keys (seeds) are the exception: cells
that differ only in a seed are averaged, and the caption says so. `report.facet` adds facets by hand;
`report.select` keeps only the cells with the given values (e.g. one learning rate) for the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from landscape_sweep.checks import fail
from landscape_sweep.report.correlation import varied

GRID = ("optimizer", "depth", "width")


def is_replicate(key: str) -> bool:
    """Keys that only re-draw randomness (`seed`, `data.seed`, …): averaging over them is a replicate mean."""
    return key.removeprefix("cfg:").split(".")[-1].endswith("seed")


UNREACHED = ("exclude", "include")  # report.unreached: cells with an endpoint that never reached trainer.stop_at


@dataclass(frozen=True)
class Options:
    """`report.facet` (keys to split every figure by), `report.select` ({key: allowed values}) and
    `report.unreached` (`exclude`: cells with an endpoint that never reached `trainer.stop_at` are left out of the
    trends, τ and the paired comparison; `include`: they are not) as given."""

    facet: tuple[str, ...] = ()
    select: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unreached: str = "exclude"

    @classmethod
    def from_config(cls, node: Any) -> Options:
        """From the `report` config node (or a dict): `facet: [keys]`, `select: {key: value or [values]}`,
        `unreached: exclude|include`."""
        node = dict(node or {})
        facet = node.get("facet") or ()
        if isinstance(facet, str):
            facet = [facet]
        if not isinstance(facet, (list, tuple)) or not all(isinstance(k, str) for k in facet):
            fail("report.facet", facet, "must be a list of config keys or cell fields, e.g. [optimizer.lr]")
        select = node.get("select") or {}
        if not isinstance(select, dict):
            fail("report.select", select, "must be a mapping {key: value or [values]}, e.g. {optimizer.lr: 0.1}")
        sel = {str(k): tuple(str(x) for x in (v if isinstance(v, (list, tuple)) else [v])) for k, v in select.items()}
        unreached = node.get("unreached") or "exclude"
        if unreached not in UNREACHED:
            fail("report.unreached", unreached, f"must be one of {', '.join(UNREACHED)}")
        return cls(tuple(facet), sel, unreached)


DEFAULT = Options()


def column(table: pd.DataFrame, key: str, what: str) -> str:
    """The table column of a user key: a cell field (`depth`), a varied config key (`optimizer.lr` ->
    `cfg:optimizer.lr`) or the column name itself; a one-line error listing the choices otherwise."""
    for c in (key, f"cfg:{key}"):
        if c in table.columns:
            return c
    choices = [c.removeprefix("cfg:") for c in table.columns if c.startswith("cfg:")] + [
        k for k in ("dataset", "arch", "depth", "width", "norm", "optimizer", "train_size", "label_noise") if k in table
    ]
    fail(what, key, f"is not a cell field or a config key that varies in this sweep; choose from {', '.join(choices)}")


def same(value: Any, wanted: Any) -> bool:
    """Equal as given, as strings, or as numbers (2 == 2.0 == "2")."""
    if value == wanted or str(value) == str(wanted):
        return True
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return False


def select(table: pd.DataFrame, options: Options) -> pd.DataFrame:
    """The rows whose values match every `report.select` entry (numbers compared as numbers)."""
    keep = pd.Series(True, index=table.index)
    for key, values in options.select.items():
        col = column(table, key, "report.select")
        keep &= table[col].map(lambda v, allowed=values: any(same(v, w) for w in allowed))
    return table[keep]


def facets(table: pd.DataFrame, shown: Sequence[str], options: Options = DEFAULT) -> list[str]:
    """Columns a figure showing `shown` must be split by: varied hyperparameters (not replicates) with more than
    one value among the completed cells of one `shown` combination, plus the user's `report.facet` keys."""
    done = table[table["status"] == "completed"] if "status" in table else table
    shown = [k for k in shown if k in done]
    out = [column(table, k, "report.facet") for k in options.facet]
    for key in varied(done) if len(done) else []:
        if key in shown or key in out or is_replicate(key):
            continue
        counts = done.groupby([done[k].astype(str) for k in shown])[key].nunique(dropna=False) if shown else None
        if counts is None or (counts > 1).any():
            out.append(key)
    return out


def pooled(table: pd.DataFrame, shown: Sequence[str], split: Sequence[str]) -> list[str]:
    """Replicate keys that still differ within one mark (what a caption must say the mean is over)."""
    done = table[table["status"] == "completed"] if "status" in table else table
    keys = [k for k in varied(done) if is_replicate(k)] if len(done) else []
    by = [k for k in (*shown, *split) if k in done]
    return [k for k in keys if not by or (done.groupby([done[b].astype(str) for b in by])[k].nunique() > 1).any()]


def label(row: pd.Series | dict, keys: Sequence[str]) -> str:
    """`lr=0.1, wd=0.0005`-style label of a row's facet values (config keys shortened to their last part)."""
    return ", ".join(f"{short(k)}={value_label(row[k])}" for k in keys)


def short(key: str) -> str:
    return key.removeprefix("cfg:")


def value_label(v: Any) -> str:
    """A value as a label: 16.0 -> '16' (columns with gaps turn ints into floats)."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def caption(split: Sequence[str], pooled_keys: Sequence[str], unit: str) -> str:
    """What each mark is: `unit` (e.g. 'mean over the cell's endpoint pairs'), the facets it is split by and the
    replicate cells it averages."""
    text = f"Each mark: one cell, {unit}."
    if split:
        text += f" Split by {', '.join(short(k) for k in split)} (varied in this sweep; never averaged)."
    if pooled_keys:
        text += f" Cells that differ only in {', '.join(short(k) for k in pooled_keys)} are averaged (replicates)."
    return text


@dataclass
class View:
    """The cells a report's figures draw (placed in the grid, `report.select` applied) and how they are split:
    computed once per report, since finding the facets scans every column."""

    table: pd.DataFrame
    split: list[str]
    pooled: list[str]

    @classmethod
    def of(cls, table: pd.DataFrame, options: Options = DEFAULT) -> View:
        t = table[table["optimizer"].notna()] if "optimizer" in table else table.iloc[:0]
        t = select(t, options)
        split = facets(t, GRID, options)
        return cls(t, split, pooled(t, GRID, split))

    def cols(self, *stems: str, done: bool = False) -> pd.DataFrame:
        """A slim copy: the grid, facet and bookkeeping columns plus the given measure stems' mean/std/n/se (pandas
        filters cost in proportion to the columns, and the sweep table has hundreds)."""
        keep = ["job", "status", *GRID, "num_params", *self.split]
        keep += [f"{s}{x}" for s in stems for x in ("_mean", "_std", "_n", "_se")]
        t = self.table[self.table["status"] == "completed"] if done else self.table
        return t[[c for c in dict.fromkeys(keep) if c in t]]

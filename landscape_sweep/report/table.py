"""The sweep table: one row per cell, read from the cells' results.json files only.

A job directory is any folder under the sweep holding `.hydra/` or `results.json`; nothing is dropped: one without
results.json is reported with status `missing` (killed, or still running), one whose results.json is not a results
record this version reads (not JSON, another schema, a field of the wrong type) with status `invalid` and the reason.

Columns (documented for users in report.md): `job, status, error, overrides` (the job's Hydra overrides), the
cell fields, `num_endpoints`, the varied
config values (`cfg:<key>`), `stop_reached`, then for every measure of `results.cell_stats`
`<measure>_mean/_std/_n/_se/_dof/_ci95_lo/_ci95_hi`: endpoint metrics and sharpness over endpoints,
`<method>/<measure>` over endpoint pairs (std: sample standard deviation, the spread, empty for n < 2; se: the
standard error of the mean, std/√n over endpoints, the endpoint jackknife over pairs; a 95 % t interval);
`<method>/num_pairs`, `<method>/unconverged` (fitted curves that hit their epoch cap); timings.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from landscape_sweep.files import read_regular_text
from landscape_sweep.manifest import cell_entries, read_manifest
from landscape_sweep.results import (
    CELL_KEYS,
    ENDPOINT_METRICS,
    PATH_MEASURES,
    PATH_METHODS,
    RUN_ONLY,
    SCHEMA,
    SHARPNESS_MEASURES,
    CellResult,
    Stat,
    atomic_write_text,
    cell_stats,
    job_dirs,
    job_overrides,
    results_path,
    summarize,
    validate_results,
)

TABLE_NAME = "sweep_results.csv"
CACHE_VERSION = (SCHEMA, 2)  # bump when what the cache stores changes (2: JSON lines, was a pickle)
MISSING = "no results.json (job killed, timed out or still running)"
NEVER_STARTED = "never started: no job dir (cancelled or failed before it ran, or still queued)"
# config keys that never tell cells apart as hyperparameters: run-only keys, analysis settings, endpoint seeds
NOT_HYPERPARAMETERS = (*RUN_ONLY, "landscape", "endpoints")


def _overrides(job_dir: Path) -> str:
    """The job's Hydra overrides as one line ('' when unknown): what defines the cell on the command line."""
    return " ".join(job_overrides(job_dir))


def _parse(path: Path) -> dict[str, Any] | str:
    """A results.json as a validated dict, or the one-line reason it is not a results record this version reads."""
    try:
        d = json.loads(read_regular_text(path))
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
    except (OSError, UnicodeDecodeError) as e:
        return f"unreadable: {type(e).__name__}: {e}"
    return validate_results(d) or d


def read_cell(job_dir: Path, parsed: dict[str, Any] | str | None = None) -> CellResult:
    """The job's results; a `missing` stub when results.json is absent, an `invalid` one (error: the reason, one
    line) when it is not JSON, of another schema, or has a field of the wrong type. `parsed`: `_parse`'s answer
    when already known (the cache)."""
    if parsed is None:
        path = results_path(job_dir)
        if not path.exists():
            return CellResult(status="missing", error=MISSING)
        parsed = _parse(path)
    reason = parsed
    if isinstance(parsed, dict):
        try:
            return CellResult.from_dict(parsed)
        except Exception as e:  # a shape the validator did not foresee: still invalid, never a crash
            reason = f"{type(e).__name__}: {e}"
    return CellResult(status="invalid", error=" ".join(reason.split()))


class ResultsCache:
    """`<sweep>/.report_cache.jsonl`: each job's parsed results.json and overrides, keyed by the files' mtime and
    size, so rebuilding a report re-reads only what changed.

    The sweep dir may be shared, so the cache is data, never code: JSON lines (a header with the version, then one
    object per job), opened without following links and read only when it is a regular file. Every cached record
    is validated again as a results.json is (`results.validate_results`); an entry that fails is dropped and its
    file read afresh. An unreadable cache, or one of another version, is ignored (rebuilt), never trusted; the
    pickle cache of earlier versions (`.report_cache.pkl`) is never loaded and is removed when the cache is saved.
    Written atomically.
    """

    NAME = ".report_cache.jsonl"
    LEGACY = ".report_cache.pkl"  # earlier versions' pickle: loading it could run code

    def __init__(self, root: Path):
        self.root, self.path, self.dirty = root, root / self.NAME, False
        self.entries: dict[str, tuple[tuple, dict[str, Any] | str | None, str]] = self._load()

    def _load(self) -> dict[str, tuple[tuple, dict[str, Any] | str | None, str]]:
        """The valid entries of the cache file ({} when it is absent, not a regular file, or of another version)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:  # absent, or a symlink
            return {}
        entries = {}
        with open(fd, encoding="utf-8") as f:
            try:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # a FIFO or device would block or never end
                    return {}
                header = json.loads(f.readline())
                if not isinstance(header, dict) or header.get("version") != list(CACHE_VERSION):
                    return {}
                for line in f:
                    entry = _cache_entry(json.loads(line))
                    if entry is not None:
                        entries[entry[0]] = entry[1:]
            except (OSError, ValueError):  # truncated or garbage (UnicodeDecodeError is a ValueError)
                return entries
        return entries

    @staticmethod
    def _key(job_dir: Path) -> tuple:
        out = []
        for p in (results_path(job_dir), job_dir / ".hydra" / "overrides.yaml"):
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def get(self, rel: str, job_dir: Path) -> tuple[dict[str, Any] | str | None, str]:
        """(parsed results, or the reason they are invalid, or None when missing; overrides line) of one job."""
        key = self._key(job_dir)
        hit = self.entries.get(rel)
        if hit is None or hit[0] != key:
            parsed = None if key[0] is None else _parse(results_path(job_dir))
            hit = self.entries[rel] = (key, parsed, _overrides(job_dir))
            self.dirty = True
        return hit[1], hit[2]

    def save(self, keep: set[str]) -> None:
        """Write the entries of the jobs in `keep` (atomically; skipped when nothing changed)."""
        with contextlib.suppress(OSError):
            (self.root / self.LEGACY).unlink(missing_ok=True)
        if not self.dirty and set(self.entries) <= keep:
            return
        lines = [json.dumps({"version": list(CACHE_VERSION)})]
        for rel, (key, parsed, over) in self.entries.items():
            if rel in keep:
                entry = {"job": rel, "key": key, "parsed": parsed, "overrides": over}
                lines.append(json.dumps(entry, separators=(",", ":")))
        with contextlib.suppress(OSError):  # a read-only sweep dir: the report still works, only slower next time
            atomic_write_text(self.path, "\n".join(lines) + "\n")


def _cache_key(value: Any) -> tuple | None:
    """A cache line's key as `ResultsCache._key` builds it (two (mtime_ns, size) pairs or None), else None."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    out = []
    for part in value:
        if part is not None and not (isinstance(part, list) and len(part) == 2 and all(type(x) is int for x in part)):
            return None
        out.append(None if part is None else tuple(part))
    return tuple(out)


def _cache_entry(d: Any) -> tuple[str, tuple, dict[str, Any] | str | None, str] | None:
    """(job, key, parsed, overrides) of one cache line, or None when any part is not what `save` writes or the
    record fails `validate_results` (the entry is then dropped and its file read again)."""
    if not isinstance(d, dict) or not isinstance(d.get("job"), str) or not isinstance(d.get("overrides"), str):
        return None
    key, parsed = _cache_key(d.get("key")), d.get("parsed")
    if key is None or (parsed is None) != (key[0] is None):
        return None
    if not isinstance(parsed, (str, type(None))) and validate_results(parsed) is not None:
        return None
    return d["job"], key, parsed, d["overrides"]


def load_results(sweep_dir: str | Path, cache: bool = True) -> list[CellResult]:
    """Every cell's results (`read_cell`: a stub for a missing or invalid results.json), `job` set. With `cache`,
    parsed files are kept in `<sweep_dir>/.report_cache.jsonl` and only new or changed files are read again."""
    root = Path(sweep_dir)
    store = ResultsCache(root) if cache else None
    out = []
    for d in job_dirs(root):
        rel = str(d.relative_to(root)) if d != root else "."
        if store is not None:
            parsed, over = store.get(rel, d)
            r = read_cell(d, parsed) if parsed is not None else CellResult(status="missing", error=MISSING)
        else:
            r, over = read_cell(d), _overrides(d)
        r.job = rel
        r.extra["overrides"] = over or r.extra.get("overrides") or ""  # report only, never written
        out.append(r)
    if store is not None:
        store.save({r.job for r in out})
    return out + unstarted_cells(root, {r.job for r in out})


def unstarted_cells(root: Path, seen: set[str]) -> list[CellResult]:
    """`missing` stubs for the cells the sweep's manifest (`sweep.json`) lists whose job dir does not exist: a job
    cancelled or failed in the queue leaves no job dir, and without these rows the report would not know the cell."""
    data = read_manifest(root)
    out = []
    for num, entry in cell_entries(data) if data else []:
        rel = str(num)  # job dirs are `<sweep_dir>/<num>` (manifest.start_sweep)
        if rel in seen or (root / rel).exists():
            continue
        job = f" (job {entry['job_id']})" if entry.get("job_id") else ""
        r = CellResult(status="missing", error=NEVER_STARTED + job)
        r.job, r.extra["overrides"] = rel, " ".join(map(str, entry.get("overrides") or []))
        out.append(r)
    return out


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (`results.summarize`)."""
    s = summarize(values)
    return s.mean, s.std


def methods_of(results: Iterable[CellResult]) -> list[str]:
    """Path methods present in any cell: the known ones in their usual order, then the rest sorted."""
    found = {p.method for r in results for p in r.connectivity}
    return [m for m in PATH_METHODS if m in found] + sorted(found - set(PATH_METHODS))


def flat_config(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as `{dotted.key: value}`, lists as strings (how the table's `cfg:` columns hold them)."""
    if not isinstance(node, dict):
        return {prefix: node if not isinstance(node, list) else str(node)}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(flat_config(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def varied_config(results: Iterable[CellResult]) -> list[str]:
    """Config keys (dotted) whose value differs among the completed cells, bookkeeping keys excluded."""
    flats = [flat_config(r.config) for r in results if r.status == "completed"]
    keys = dict.fromkeys(k for f in flats for k in f)
    keep = [k for k in keys if not any(k == x or k.startswith(f"{x}.") for x in NOT_HYPERPARAMETERS)]
    return [k for k in keep if len({str(f.get(k)) for f in flats}) > 1]


def cell_row(r: CellResult, methods: Iterable[str], config_keys: Iterable[str] = ()) -> dict[str, Any]:
    """One row of the sweep table (`methods`: the path-method columns to fill)."""
    row: dict[str, Any] = {"job": r.job, "status": r.status, "error": r.error, "overrides": r.extra.get("overrides")}
    row.update({k: r.cell.get(k) for k in CELL_KEYS})
    row["num_endpoints"] = len(r.endpoints)
    row["stop_reached"] = stop_reached(r)
    flat = flat_config(r.config)
    row.update({f"cfg:{k}": flat.get(k) for k in config_keys})
    stats = cell_stats(r)
    names = [*ENDPOINT_METRICS, *SHARPNESS_MEASURES]
    for m in methods:
        entries = [p for p in r.connectivity if p.method == m]
        row[f"{m}/num_pairs"] = len(entries)
        row[f"{m}/unconverged"] = sum(1 for p in entries if p.fit is not None and not p.fit.get("converged"))
        names += [f"{m}/{k}" for k in PATH_MEASURES]
    names += [k for k in stats if k not in set(names)]  # measures only some cells have (e.g. `ood/<set>/acc`)
    for name in names:
        row.update(stat_columns(name, stats.get(name)))
    for k in ("data", "train", "analysis", "total"):
        row[f"{k}_time_s"] = r.timing_s.get(k)
    return row


def stat_columns(name: str, s: Stat | None) -> dict[str, Any]:
    """The table columns of one measure: `_mean`, `_std` (spread), `_n`, `_se` (error of the mean), `_dof` and the
    95 % t interval `_ci95_lo`, `_ci95_hi` (`results.Stat`)."""
    if s is None:
        s = Stat(math.nan, math.nan, 0)
    lo, hi = s.ci95
    return {f"{name}_mean": s.mean, f"{name}_std": s.std, f"{name}_n": s.n, f"{name}_se": s.se,
            f"{name}_dof": s.dof if s.dof else math.nan, f"{name}_ci95_lo": lo, f"{name}_ci95_hi": hi}  # fmt: skip


def stop_reached(r: CellResult) -> bool | None:
    """Whether every endpoint reached `trainer.stop_at` (None when no endpoint has the criterion set)."""
    stops = [e.stop for e in r.endpoints if e.stop is not None]
    return all(bool(s.get("reached")) for s in stops) if stops else None


def sweep_table(results: list[CellResult]) -> pd.DataFrame:
    """One row per cell; every row has the path-method columns of every method seen in the sweep."""
    methods, keys = methods_of(results), varied_config(results)
    return pd.DataFrame([cell_row(r, methods, keys) for r in results]).copy()  # copy: one consolidated block


def write_table(sweep_dir: str | Path) -> tuple[Path, pd.DataFrame]:
    """Build `<sweep_dir>/sweep_results.csv` (atomically) and return its path and the table."""
    table = sweep_table(load_results(sweep_dir))
    path = Path(sweep_dir) / TABLE_NAME
    atomic_write_text(path, table.to_csv(index=False))
    return path, table

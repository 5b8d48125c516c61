"""The W&B runs a sweep wrote on this machine, read back from their files without a server.

wandb >= 0.2x keeps a run (offline or online) as one binary log, `<job_dir>/wandb/*run-<id>/run-<id>.wandb`:
LevelDB-log framing (file header b":W&B" + magic 0xBEE1 + version 0, 32 KiB blocks, records with crc32 / length /
type headers) around protobuf `Record`s. Only what a dashboard needs is kept: the run's identity, its config and
its final summary (the keys it logged).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class LocalRun:
    """One W&B run as its `run-<id>.wandb` file holds it."""

    path: Path
    id: str = ""
    project: str = ""
    entity: str = ""
    group: str = ""
    job_type: str = ""
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # media and tables are dicts with `_type`

    @property
    def job_dir(self) -> Path:
        """The directory whose `wandb/` holds the run."""
        return self.path.parents[2]


def records(path: str | Path) -> Iterator[bytes]:
    """The protobuf payload of every complete record (a truncated tail, from a live or killed writer, is skipped)."""
    buf = Path(path).read_bytes()
    if buf[:HEADER] != struct.pack("<4sHB", b":W&B", 0xBEE1, 0):
        raise ValueError(f"{path}: not a W&B run log (bad header)")
    pos, parts = HEADER, None
    while pos + HEADER <= len(buf):
        left = BLOCK - pos % BLOCK
        crc, length, kind = struct.unpack("<IHB", buf[pos : pos + HEADER]) if left >= HEADER else (0, 0, 0)
        if kind == 0 and length == 0:  # block trailer or zero padding
            pos += left
            continue
        data = buf[pos + HEADER : pos + HEADER + length]
        if len(data) < length or zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            return
        pos += HEADER + length
        if kind == FULL:
            yield data
        elif kind == FIRST:
            parts = [data]
        elif kind in (MIDDLE, LAST) and parts is not None:
            parts.append(data)
            if kind == LAST:
                yield b"".join(parts)
                parts = None


def _path(item: Any) -> list[str]:
    return [item.key] if item.key else list(item.nested_key)


def _node(target: dict[str, Any], parents: list[str], create: bool) -> dict[str, Any] | None:
    """The dict at `parents` below `target` (made when `create`; None when absent)."""
    node = target
    for p in parents:
        if not isinstance(node.get(p), dict):
            if not create:
                return None
            node[p] = {}
        node = node[p]
    return node


def _apply(target: dict[str, Any], updates: Iterable[Any], removes: Iterable[Any] = ()) -> None:
    """Apply W&B's config/summary items (a flat `key` or a `nested_key` path into dicts) to `target`."""
    for item in updates:
        *parents, last = _path(item)
        _node(target, parents, create=True)[last] = json.loads(item.value_json)
    for item in removes:
        *parents, last = _path(item)
        node = _node(target, parents, create=False)
        if node is not None:
            node.pop(last, None)


def read_run(path: str | Path) -> LocalRun:
    """The run in a `run-<id>.wandb` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    run = LocalRun(Path(path))
    for data in records(path):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.id, run.project, run.entity, run.group = r.run_id, r.project, r.entity, r.run_group
            run.job_type, run.name = r.job_type, r.display_name
            _apply(run.config, r.config.update)
            _apply(run.summary, r.summary.update)
        elif kind == "config":
            _apply(run.config, rec.config.update, rec.config.remove)
        elif kind == "summary":
            _apply(run.summary, rec.summary.update, rec.summary.remove)
    run.config.pop("_wandb", None)
    run.summary.pop("_wandb", None)
    return run


def run_files(job_dir: str | Path) -> list[Path]:
    """The run logs in `<job_dir>/wandb/` (offline and online runs), oldest first."""
    return sorted(Path(job_dir).glob("wandb/*run-*/run-*.wandb"), key=lambda p: p.parent.name.rsplit("-", 2)[-2:])


def local_runs(dirs: Iterable[str | Path]) -> list[LocalRun]:
    """Every run in the `wandb/` folders of `dirs`, oldest first within each."""
    return [read_run(p) for d in dirs for p in run_files(d)]

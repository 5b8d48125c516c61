"""Read back what reached an offline W&B run (wandb >= 0.2x writes only the binary `run-<id>.wandb` log).

The file is LevelDB-log framed (7-byte header b":W&B" + magic 0xBEE1 + version 0, 32 KiB blocks, records with
crc32/length/type headers) holding protobuf `Record`s; see ../shared/reference/wandb_offline_reader.py.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

BLOCK, HEADER = 32768, 7


def records(path: str | Path):
    """Yield the raw protobuf payload of every complete record."""
    buf = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", buf[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    pos, parts = HEADER, None
    while pos + HEADER <= len(buf):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", buf[pos : pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        data = buf[pos + HEADER : pos + HEADER + length]
        if len(data) < length:
            break
        assert zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc, f"bad crc at {pos}"
        pos += HEADER + length
        if kind == 1:
            yield data
        elif kind == 2:
            parts = [data]
        elif kind in (3, 4) and parts is not None:
            parts.append(data)
            if kind == 4:
                yield b"".join(parts)
                parts = None


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """run info, config, history rows, summary and exit code of an offline run directory."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = Path(run_dir).glob("*.wandb")
    out: dict[str, Any] = {"run": {}, "config": {}, "history": [], "summary": {}, "exit_code": None}

    def key(item) -> str:
        return item.key or "/".join(item.nested_key)

    for data in records(path):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out["run"] = {
                "project": r.project,
                "group": r.run_group,
                "job_type": r.job_type,
                "tags": list(r.tags),
                "name": r.display_name,
            }
            out["config"].update({key(u): json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            out["config"].update({key(u): json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            out["history"].append({key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out["summary"].update({key(u): json.loads(u.value_json) for u in rec.summary.update})
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out


def offline_runs(job_dir: str | Path) -> list[Path]:
    return sorted((Path(job_dir) / "wandb").glob("offline-run-*"))

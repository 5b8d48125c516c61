"""`<sweep_dir>/sweep.json`: what a sweep asked for and where each cell was submitted.

Written on the submitting side: when a multirun starts (the command, its working directory and Python, and every
cell's overrides and job dir; `pipeline/hydra_callbacks.py`), and by the SLURM launchers when they submit (each
cell's job id and submit time, each array and report job; `hydra_plugins/landscape_sweep_launchers`). It is what
`python -m landscape_sweep.status` and `python -m landscape_sweep.resubmit` read once the jobs have left the queue.

    {"schema": 1, "sweep_dir": "/abs/sweep", "launcher": "<hydra.launcher._target_>", "detach": true,
     "command": {"argv": ["-m", "model.depth=1,2"], "cwd": "/abs", "python": "/abs/.venv/bin/python"},
     "cells": {"0": {"overrides": ["model.depth=1"], "job_dir": "/abs/sweep/0", "job_id": "123_0",
                     "submitted": "2026-11-29T23:40:00+00:00"}, ...},
     "submissions": [{"time": "...", "array": "123", "report_job": "125", "cells": [0, 1]}]}

Re-running a sweep into the same directory keeps the earlier job ids and submissions (a resubmitted cell's entry
is replaced). Every write is atomic (temp file, then rename). The file is data: readers take a cell's job dir as
`<the manifest's own dir>/<num>` (`job_dir` and `sweep_dir` are recorded for people, so a moved or copied sweep
reads its own cells), and `resubmit` never runs the recorded `python`.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from landscape_sweep.files import atomic_write_text, read_regular_text

MANIFEST_NAME = "sweep.json"
SCHEMA = 1


def now() -> str:
    """The local time, to the second, with its UTC offset (how the manifest stamps submissions)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def manifest_path(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / MANIFEST_NAME


def read_manifest(sweep_dir: str | Path) -> dict[str, Any] | None:
    """The sweep's manifest, or None when it has none (or an unreadable or malformed one: the callers fall back to
    job dirs; `manifest_error` says what is wrong with it)."""
    try:
        return as_manifest(json.loads(read_regular_text(manifest_path(sweep_dir))))
    except (OSError, ValueError):
        return None


def manifest_error(sweep_dir: str | Path) -> str | None:
    """Why the sweep's sweep.json cannot be used (not readable, not JSON, an entry of the wrong shape), in one line;
    None when it is fine or absent."""
    try:
        data = json.loads(read_regular_text(manifest_path(sweep_dir)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return f"not a readable JSON file ({type(e).__name__}: {' '.join(str(e).split())[:120]})"
    return shape_error(data)


def as_manifest(data: Any) -> dict[str, Any] | None:
    """Parsed JSON as a manifest (None unless it has the manifest's shape: `shape_error`), `submissions`
    defaulted."""
    if shape_error(data) is not None:
        return None
    data.setdefault("submissions", [])
    return data


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _cell_numbers(value: Any) -> bool:
    return isinstance(value, list) and all(type(n) is int for n in value)


# what each field of a cell entry and of a submission must be (null allowed where it is optional)
JOB_ID = (str, "a string (a SLURM job id)")
_CELL_FIELDS = {"overrides": (_strings, "a list of strings"), "job_dir": (str, "a string"), "job_id": JOB_ID,
                "submitted": (str, "a time string")}  # fmt: skip
_SUBMISSION_FIELDS = {"time": (str, "a time string"), "array": JOB_ID, "report_job": JOB_ID,
                      "cells": (_cell_numbers, "a list of cell numbers")}  # fmt: skip


def _field_error(where: str, entry: Any, fields: dict[str, tuple[Any, str]]) -> str | None:
    if not isinstance(entry, dict):
        return f"{where}={entry!r}: must be an object"
    for key, (kind, what) in fields.items():
        value = entry.get(key)
        ok = value is None or (isinstance(value, kind) if isinstance(kind, type) else kind(value))
        if not ok:
            return f"{where}.{key}={value!r}: must be {what}"
    return None


def shape_error(data: Any) -> str | None:
    """The first entry of parsed sweep.json that is not what `start_sweep`/`record_submission` write, as
    `key=value: what it must be`; None when every entry the readers use has its shape."""
    if not isinstance(data, dict) or not isinstance(data.get("cells"), dict):
        return "cells: missing or not an object {num: entry}" if isinstance(data, dict) else "must be a JSON object"
    for num, entry in data["cells"].items():
        if not str(num).isdigit():
            return f"cells[{num!r}]: a cell number must be a non-negative integer"
        error = _field_error(f"cells[{num!r}]", entry, _CELL_FIELDS)
        if error:
            return error
    subs = data.get("submissions", [])
    if not isinstance(subs, list):
        return f"submissions={subs!r}: must be a list"
    for i, sub in enumerate(subs):
        error = _field_error(f"submissions[{i}]", sub, _SUBMISSION_FIELDS)
        if error:
            return error
    command = data.get("command")
    if command is not None and not isinstance(command, dict):
        return f"command={command!r}: must be an object {{argv, cwd, python}}"
    return None


def write_manifest(sweep_dir: str | Path, data: dict[str, Any]) -> None:
    atomic_write_text(manifest_path(sweep_dir), json.dumps(data, indent=1) + "\n")


def start_sweep(
    sweep_dir: str | Path,
    cells: list[list[str]],
    *,
    argv: list[str],
    cwd: str,
    python: str,
    launcher: str,
    detach: bool,
) -> dict[str, Any]:
    """Record a multirun's command and cells (job `num` = its index, job dir = `<sweep_dir>/<num>`); job ids and
    submissions already recorded for this sweep dir are kept."""
    sweep = Path(sweep_dir).absolute()
    old = read_manifest(sweep) or {"cells": {}, "submissions": []}
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "sweep_dir": str(sweep),
        "launcher": launcher,
        "detach": detach,
        "command": {"argv": list(argv), "cwd": cwd, "python": python},
        "cells": {},
        "submissions": old["submissions"],
    }
    for num, overrides in enumerate(cells):
        entry = dict(old["cells"].get(str(num), {}))
        if entry.get("overrides") not in (None, list(overrides)):  # another grid in this dir: its job ids do not apply
            entry = {}
        entry.update(overrides=list(overrides), job_dir=str(sweep / str(num)))
        data["cells"][str(num)] = entry
    write_manifest(sweep, data)
    return data


def record_submission(
    sweep_dir: str | Path,
    jobs: dict[int, str],
    overrides: dict[int, list[str]],
    *,
    array: str | None,
    report_job: str | None,
) -> dict[str, Any]:
    """Add one submission: the job id of each submitted cell (`jobs`: num -> id), its array and report job."""
    sweep = Path(sweep_dir).absolute()
    data = read_manifest(sweep) or {"schema": SCHEMA, "sweep_dir": str(sweep), "cells": {}, "submissions": []}
    stamp = now()
    for num, job_id in jobs.items():
        entry = data["cells"].setdefault(
            str(num), {"overrides": overrides.get(num, []), "job_dir": str(sweep / str(num))}
        )
        entry.update(job_id=job_id, submitted=stamp)
    data["submissions"].append({"time": stamp, "array": array, "report_job": report_job, "cells": sorted(jobs)})
    write_manifest(sweep, data)
    return data


def cell_entries(data: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(num, entry) of every cell in the manifest, by num."""
    return sorted(((int(k), v) for k, v in data["cells"].items() if str(k).isdigit()), key=lambda kv: kv[0])


def report_jobs(data: dict[str, Any]) -> list[str]:
    """The report jobs of every submission, oldest first."""
    return [s["report_job"] for s in data.get("submissions", []) if s.get("report_job")]

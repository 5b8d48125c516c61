"""`<sweep_dir>/sweep.json`: the cells and command of a sweep, and where each cell was submitted."""

from __future__ import annotations

import json

from landscape_sweep import manifest


def start(sweep, cells, argv=("-m", "model.depth=1,2")):
    return manifest.start_sweep(sweep, cells, argv=list(argv), cwd="/w", python="/py", launcher="L", detach=True)


def test_a_sweep_records_its_command_cells_and_submissions(tmp_path):
    cells = [["model.depth=1"], ["model.depth=2"]]
    start(tmp_path, cells)
    manifest.record_submission(tmp_path, {0: "5_0", 1: "5_1"}, dict(enumerate(cells)), array="5", report_job="6")
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["command"] == {"argv": ["-m", "model.depth=1,2"], "cwd": "/w", "python": "/py"}
    assert data["cells"]["1"]["overrides"] == ["model.depth=2"] and data["cells"]["1"]["job_id"] == "5_1"
    assert data["cells"]["0"]["job_dir"] == str(tmp_path / "0") and "submitted" in data["cells"]["0"]
    assert [(s["array"], s["report_job"], s["cells"]) for s in data["submissions"]] == [("5", "6", [0, 1])]
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.json"]  # written through a temp file, renamed
    # re-running the sweep into its dir keeps the job ids; a resubmitted cell gets its new one
    start(tmp_path, cells)
    manifest.record_submission(tmp_path, {1: "7_0"}, {1: cells[1]}, array="7", report_job="8")
    data = manifest.read_manifest(tmp_path)
    assert [e["job_id"] for _, e in manifest.cell_entries(data)] == ["5_0", "7_0"]
    assert [s["array"] for s in data["submissions"]] == ["5", "7"] and manifest.report_jobs(data) == ["6", "8"]


def test_another_grid_in_the_same_dir_does_not_inherit_job_ids(tmp_path):
    start(tmp_path, [["a=1"], ["a=2"]])
    manifest.record_submission(tmp_path, {0: "5_0", 1: "5_1"}, {}, array="5", report_job=None)
    data = start(tmp_path, [["a=1"], ["a=3"]])
    assert data["cells"]["0"]["job_id"] == "5_0" and "job_id" not in data["cells"]["1"]


def test_an_unreadable_manifest_is_no_manifest(tmp_path):
    assert manifest.read_manifest(tmp_path) is None
    (tmp_path / "sweep.json").write_text('{"cells": ')
    assert manifest.read_manifest(tmp_path) is None
    (tmp_path / "sweep.json").write_text('{"cells": []}')
    assert manifest.read_manifest(tmp_path) is None


MALFORMED = [
    ({"cells": {"0": 5}}, "cells['0']=5: must be an object"),
    ({"cells": {"0": {"overrides": 5}}}, "cells['0'].overrides=5: must be a list of strings"),
    ({"cells": {"0": {"overrides": [1, None]}}}, "cells['0'].overrides=[1, None]: must be a list of strings"),
    ({"cells": {"0": {"job_id": 5}}}, "cells['0'].job_id=5: must be a string (a SLURM job id)"),
    ({"cells": {"x": {}}}, "cells['x']: a cell number must be a non-negative integer"),
    ({"cells": {}, "submissions": 5}, "submissions=5: must be a list"),
    ({"cells": {}, "submissions": [5]}, "submissions[0]=5: must be an object"),
    ({"cells": {}, "submissions": [{"report_job": 5}]}, "submissions[0].report_job=5: must be a string"),
    ({"cells": {}, "submissions": [{"cells": ["0"]}]}, "submissions[0].cells=['0']: must be a list of cell numbers"),
    ({"cells": {}, "command": 5}, "command=5: must be an object {argv, cwd, python}"),
    ([1], "must be a JSON object"),
]


def test_a_malformed_manifest_is_named_in_one_line_and_read_as_none(tmp_path):
    for data, error in MALFORMED:
        (tmp_path / "sweep.json").write_text(json.dumps(data))
        assert manifest.read_manifest(tmp_path) is None, data
        assert manifest.manifest_error(tmp_path).startswith(error), (data, manifest.manifest_error(tmp_path))
    (tmp_path / "sweep.json").write_text("{oops")
    assert manifest.manifest_error(tmp_path).startswith("not a readable JSON file (JSONDecodeError: ")
    (tmp_path / "sweep.json").unlink()
    assert manifest.manifest_error(tmp_path) is None

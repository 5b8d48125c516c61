"""`python -m landscape_sweep.dashboard`: a W&B report of a real tiny sweep (2 widths x 2 optimizers, W&B offline),
its panels checked against the keys the runs logged (read by the tests' own reader), the group filter, colours by
optimizer, publishing (offline refusal; a faked W&B), the missing-package message and the key discovery rules."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from landscape_sweep import dashboard
from landscape_sweep.dashboard import Run, Sweep, build_report, metric_sections, x_axes
from landscape_sweep.wandb_runs import read_run as package_read_run
from tests._support.cli import FAST, run_in_process
from tests._support.wandb_offline import offline_runs, read_run

requires_workspaces = pytest.mark.skipif(
    importlib.util.find_spec("wandb_workspaces") is None, reason="wandb-workspaces not installed (the dev extra has it)"
)
SWEEP = [
    "-m",
    "model.width=8,16",
    "optimizer=sgd,sam",
    *[o for o in FAST if o != "logger=none" and not o.startswith("model.width")],
    "logger=wandb",
    "landscape=fast",
    "landscape.connectivity.num_points=5",
    "landscape.connectivity.curve.max_epochs=5",
    "landscape.sharpness.kinds=[worst]",
    "trainer.threads=1",  # steadier than sharing 2 cores with whatever else runs
    "report.wandb=true",
]
BARRIERS = {f"landscape/{m}/loss_barrier" for m in ("linear", "linear_aligned", "bezier")}
SCALARS = BARRIERS | {"sharpness/hessian_top_eig", "sharpness/hessian_trace", "test/acc", "gen_gap"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir) -> Path:
    """A real sweep through the CLI: 4 cells logged offline to W&B, and the report run."""
    root = tmp_path_factory.mktemp("dash")
    args = [*SWEEP, f"hydra.sweep.dir={root / 'sweep'}", f"paths.data_dir={data_dir}"]
    proc = run_in_process(args, root)  # the CLI's main, in this process
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root / "sweep"


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m landscape_sweep.dashboard args` from `cwd` (its main, in this process)."""
    return run_in_process(args, cwd, module="landscape_sweep.dashboard")


def grids(spec: dict) -> list[dict]:
    return [b["metadata"] for b in spec["spec"]["blocks"] if b["type"] == "panel-grid"]


def picked_tables(node) -> list[str]:
    """The summary keys the weave panels pick (`runs.summary[<key>]`)."""
    if isinstance(node, dict):
        if (node.get("fromOp") or {}).get("name") == "pick":
            return [node["fromOp"]["inputs"]["key"]["val"]]
        return [t for v in node.values() for t in picked_tables(v)]
    return [t for v in node for t in picked_tables(v)] if isinstance(node, list) else []


def group_filter(runset: dict) -> dict[str, tuple[str, str]]:
    return {f["key"]["name"]: (f["op"], f["value"]) for f in runset["filters"]["filters"]}


@pytest.mark.slow
@requires_workspaces
def test_dashboard_of_a_real_sweep(sweep):
    proc = cli([str(sweep)], sweep.parent)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].startswith(f"dashboard: {sweep / 'dashboard.json'} (")
    assert "Barriers 3, Sharpness 2, Generalization 2, " in out[0] and ", Sweep report " in out[0]
    assert "left out: model.depth is 2 in every run: no vs-model.depth panels" in out
    assert f"  wandb sync {sweep}/*/wandb/offline-run-* {sweep}/wandb/offline-run-*" in out
    assert out[-1] == f"  python -m landscape_sweep.dashboard {sweep} --publish"

    runs = {p: read_run(p) for job in [*sorted(sweep.glob("[0-9]")), sweep] for p in offline_runs(job)}
    cells = [r for r in runs.values() if r["run"]["job_type"] != "report"]
    (report_run,) = [r for r in runs.values() if r["run"]["job_type"] == "report"]
    assert len(cells) == 4 and {r["run"]["group"] for r in runs.values()} == {"sweep"}
    logged = set().union(*(r["summary"] for r in cells))

    spec = json.loads((sweep / "dashboard.json").read_text())
    assert spec["project"]["name"] == "landscape_sweep" and spec["displayName"] == "Loss landscape sweep sweep"
    *cell_grids, report_grid = grids(spec)
    scatter = [p["config"] for g in cell_grids for p in g["panelBankSectionConfig"]["panels"]]
    ys = {p["yAxis"].removeprefix("summary:") for p in scatter}
    ood = {k for k in logged if re.fullmatch(r"ood/[^/]+/acc|ood_gap", k)}  # when the cells test OOD sets
    assert ys <= logged and ys - SCALARS == {y for y in ys if y.startswith("ood")} >= ood
    assert ys >= SCALARS
    if not ood:
        assert any(line.startswith("left out: no run logged OOD metrics") for line in out)
    assert {p["xAxis"] for p in scatter} == {"config:model.value.width"}
    assert all(r["config"]["model"]["width"] in (8, 16) for r in cells)
    for g in cell_grids:
        (runset,) = g["runSets"]
        assert group_filter(runset) == {"group": ("=", "sweep"), "jobType": ("!=", "report")}
        colors = g["customRunColors"]  # one colour per optimizer, keyed by run id
        by_opt = {}
        for path, r in runs.items():
            if r["run"]["job_type"] != "report":
                by_opt.setdefault(r["run"]["job_type"], set()).add(colors[path.name.rsplit("-", 1)[-1]])
        assert set(by_opt) == {"sgd", "sam"} and all(len(c) == 1 for c in by_opt.values())
        assert by_opt["sgd"] != by_opt["sam"]

    (runset,) = report_grid["runSets"]
    assert group_filter(runset) == {"group": ("=", "sweep"), "jobType": ("=", "report")}
    panels = report_grid["panelBankSectionConfig"]["panels"]
    tables = picked_tables(panels)
    media = [k for p in panels if p["viewType"] == "Media Browser" for k in p["config"]["mediaKeys"]]
    assert tables == ["kendall_tau", "sweep_results"]
    assert all(report_run["summary"][f"{t}/_type"] == "table-file" for t in tables)
    assert len(media) == len(set(media)) >= 5 and all(k.startswith("figures/") for k in media)
    assert all(report_run["summary"][f"{k}/_type"] == "image-file" for k in media)
    assert {k.removesuffix("/_type") for k, v in report_run["summary"].items() if v == "image-file"} == set(media)

    from wandb_workspaces.reports.v2 import Report, internal

    rebuilt = Report._from_model(internal.ReportViewspec.model_validate(spec))  # the JSON is a report model
    assert rebuilt.title == spec["displayName"] and len(rebuilt.blocks) == len(spec["spec"]["blocks"]) - 2

    before = (sweep / "dashboard.json").read_bytes()
    proc = cli([str(sweep), "--publish"], sweep.parent)  # cli_env: WANDB_MODE=offline
    assert proc.returncode == 1 and proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert "--publish" in proc.stderr and "WANDB_MODE=offline" in proc.stderr
    assert (sweep / "dashboard.json").read_bytes() == before


@pytest.mark.slow
@requires_workspaces
def test_x_axes_ood_and_missing_keys(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "d.json"
    assert dashboard.main([str(sweep), "--x", "model.width", "--x", "model.depth", "--out", str(out)]) == 0
    scatter = [
        p["config"] for g in grids(json.loads(out.read_text()))[:-1] for p in g["panelBankSectionConfig"]["panels"]
    ]
    xs = [p["xAxis"] for p in scatter]
    assert xs.count("config:model.value.depth") == xs.count("config:model.value.width") == len(xs) / 2 >= 7
    assert "left out: model.depth" not in capsys.readouterr().out

    s = dashboard.sweep_from_dir(sweep)
    for r in s.cells:  # OOD keys are discovered, never listed
        r.summary = {k: v for k, v in r.summary.items() if not k.startswith("ood")}
        r.summary.update({"ood/contrast_3/acc": 0.5, "ood/contrast_3/acc_std": 0.1, "ood_gap": 0.2})
        r.summary.pop("sharpness/hessian_trace")
    report, notes = build_report(s)
    ood = report.blocks[[getattr(b, "text", None) for b in report.blocks].index("Out of distribution") + 1]
    assert [(p.x.name, p.y.name) for p in ood.panels] == [
        ("model.width", "ood/contrast_3/acc"),
        ("model.width", "ood_gap"),
    ]
    assert "no run logged sharpness/hessian_trace: no Hessian trace panels" in notes
    assert dashboard.panel_count(report)["Out of distribution"] == 2


@pytest.mark.slow
@requires_workspaces
def test_publish_points_run_sets_at_the_project_and_keeps_the_report_id(sweep, tmp_path, monkeypatch, capsys):
    import wandb_workspaces.reports.v2 as wr

    saved = []

    def save(self, draft=False, clone=False):
        saved.append(self)
        self.id = self.id or "rep1"
        return self

    monkeypatch.setattr(dashboard, "online_api", lambda what: type("Api", (), {"default_entity": "me"})())
    monkeypatch.setattr(wr.Report, "save", save)
    monkeypatch.setattr(wr.Report, "url", property(lambda self: f"https://wandb.test/{self.entity}/{self.id}"))
    out = tmp_path / "d.json"
    assert dashboard.main([str(sweep), "--publish", "--out", str(out)]) == 0
    assert "published: https://wandb.test/me/rep1" in capsys.readouterr().out
    (report,) = saved
    runsets = [rs for b in report.blocks if isinstance(b, wr.PanelGrid) for rs in b.runsets]
    assert len(runsets) >= 4 and {(rs.entity, rs.project) for rs in runsets} == {("me", "landscape_sweep")}
    spec = json.loads(out.read_text())
    assert spec["id"] == "rep1" and spec["project"] == {"name": "landscape_sweep", "entityName": "me"}

    monkeypatch.setenv("WANDB_MODE", "offline")
    assert dashboard.main([str(sweep), "--out", str(out)]) == 0  # rebuilt offline: publishing again updates rep1
    assert json.loads(out.read_text())["id"] == "rep1"


@pytest.mark.slow
def test_run_reader_tolerates_a_truncated_log(sweep, tmp_path):
    (src,) = (sweep / "0").glob("wandb/offline-run-*/run-*.wandb")
    whole = package_read_run(src)
    assert whole.group == "sweep" and whole.job_type == "sgd" and whole.config["model"]["width"] == 8
    assert whole.summary["test/acc"] == read_run(src.parent)["summary"]["test/acc"]
    cut = tmp_path / "run-x.wandb"
    shutil.copy(src, cut)
    with open(cut, "r+b") as f:
        f.truncate(src.stat().st_size // 2)
    assert package_read_run(cut).id == whole.id  # a killed writer's log: what was complete
    (tmp_path / "bad.wandb").write_bytes(b"not a run")
    with pytest.raises(ValueError, match="not a W&B run log"):
        package_read_run(tmp_path / "bad.wandb")


def test_publish_without_login_fails_in_one_line(tmp_path, monkeypatch, capsys):
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))
    assert dashboard.main([str(tmp_path), "--publish"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("landscape_sweep.dashboard: --publish: W&B cannot be reached (")


@requires_workspaces
@pytest.mark.parametrize(
    "args, code, message",
    [
        (["nope"], 2, "target='nope': not a directory; a W&B group name needs --project"),
        (["{tmp}"], 2, "sweep_dir='{tmp}': no job directories"),
        (["grp", "--project", "p"], 1, "group='grp': needs W&B online, but WANDB_MODE=offline"),
    ],
)
def test_bad_targets_fail_in_one_line(tmp_path, monkeypatch, capsys, args, code, message):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert dashboard.main([a.format(tmp=tmp_path) for a in args]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(tmp=tmp_path) in err[0]


def test_missing_package_says_how_to_install(tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m.split(".")[0] == "wandb_workspaces"] + ["wandb_workspaces"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    assert dashboard.main([str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "wandb-workspaces" in line and "pip install 'landscape_sweep[dashboard]'" in line


def test_metric_keys_are_discovered_and_missing_ones_named():
    keys = {"landscape/bezier/loss_barrier", "landscape/linear/loss_barrier", "landscape/linear/loss_barrier_std",
            "landscape/zigzag/loss_barrier", "test/acc", "ood/fog/acc", "ood/fog/acc_n", "ood_gap"}  # fmt: skip
    sections, notes = metric_sections(keys)
    assert sections == [
        ("Barriers", [(f"landscape/{m}/loss_barrier", f"{m} loss barrier") for m in ("linear", "bezier", "zigzag")]),
        ("Generalization", [("test/acc", "test accuracy")]),
        ("Out of distribution", [("ood/fog/acc", "ood/fog/acc"), ("ood_gap", "ood_gap")]),
    ]
    assert notes == [
        "no run logged sharpness/hessian_top_eig: no top Hessian eigenvalue panels",
        "no run logged sharpness/hessian_trace: no Hessian trace panels",
        "no run logged gen_gap: no generalization gap panels",
    ]


def test_x_axes_are_the_varying_config_keys():
    def run(width, depth=2):
        return Run("", "sgd", "sgd", {"model": {"width": width, "depth": depth}}, {"test/acc": 0.5})

    assert x_axes([run(8), run(16)]) == (["model.width"], ["model.depth is 2 in every run: no vs-model.depth panels"])
    assert x_axes([run(8, 1), run(8, 2)])[0] == ["model.depth"]
    assert x_axes([run(8), run(16, 1)])[0] == ["model.width", "model.depth"]
    assert x_axes([run(8)]) == (["model.width"], ["model.depth is 2 in every run: no vs-model.depth panels"])
    with pytest.raises(ValueError, match=r"--x='lr': no run's config has that key"):
        x_axes([run(8)], ["lr"])


@requires_workspaces
def test_group_names_with_quotes_are_refused():
    run = Run("", "sgd", "sgd", {"model": {"width": 8}}, {"test/acc": 0.5})
    with pytest.raises(ValueError, match='group="it\'s": must not contain quotes'):
        build_report(Sweep("p", "", "it's", [run]))

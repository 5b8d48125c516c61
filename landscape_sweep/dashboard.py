"""`python -m landscape_sweep.dashboard <sweep_dir | group>`: a W&B report of a sweep, defined as code.

The report (wandb-workspaces' `reports.v2`) plots the cell runs of the sweep's W&B group against their config:
the loss barrier of each path method, the top Hessian eigenvalue and trace, test accuracy, generalization gap and,
when logged, OOD accuracy/gap, vs `model.width` and `model.depth` (one point per run, coloured by optimizer); then
the report run's (job_type=report) Kendall τ table, sweep table and figures. Metric keys come from what the runs
logged (their `run-<id>.wandb` files in the sweep dir; the W&B API for a group name), never from a fixed list:
a panel whose key no run logged is left out, and said so.

Offline (the default) the definition is written as the report model's JSON, `<sweep_dir>/dashboard.json`;
`--publish` saves it to W&B (network and `wandb login`; `wandb sync` the offline runs first). Needs the optional
extra `pip install 'landscape_sweep[dashboard]'` (wandb-workspaces); nothing else in the package does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landscape_sweep.checks import fail
from landscape_sweep.files import atomic_write_text
from landscape_sweep.results import PATH_METHODS, CellResult, job_dirs, method_label, read_results
from landscape_sweep.wandb_runs import LocalRun, local_runs

DASHBOARD_NAME = "dashboard.json"
INSTALL = "pip install 'landscape_sweep[dashboard]' (or: pip install wandb-workspaces)"
X_KEYS = ("model.width", "model.depth")  # default x-axes, each used when it varies across the runs
LOG_X = {"model.width"}
BARRIER = re.compile(r"^landscape/([^/]+)/loss_barrier$")
OOD = re.compile(r"ood[/_](?!.*_(std|n)$).*(acc|gap)")  # ood/<name>/acc, ood_gap, ood/<name>/gap, …: no _std/_n
FIXED = {
    "Sharpness": [
        ("sharpness/hessian_top_eig", "top Hessian eigenvalue"),
        ("sharpness/hessian_trace", "Hessian trace"),
    ],
    "Generalization": [("test/acc", "test accuracy"), ("gen_gap", "generalization gap")],
}
NOT_OPTIMIZER = {"", "report", "analysis"}  # job types that are not an optimizer label
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
OFFLINE_MODES = {"offline", "disabled", "dryrun"}


class Unavailable(RuntimeError):
    """W&B cannot be reached from here (offline, not logged in, no network)."""


@dataclass
class Run:
    """What the dashboard needs of one W&B run."""

    id: str
    job_type: str
    optimizer: str
    config: dict[str, Any]
    summary: dict[str, Any]


@dataclass
class Sweep:
    """The W&B runs of one sweep: its cells' runs (and re-analyses) and its report runs."""

    project: str
    entity: str
    group: str
    cells: list[Run]
    reports: list[Run] = field(default_factory=list)
    report_group: str = ""
    notes: list[str] = field(default_factory=list)
    offline_runs: list[str] = field(default_factory=list)  # `wandb sync` patterns


def workspaces() -> Any:
    """`wandb_workspaces.reports.v2`, or an ImportError whose message says how to install it."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        raise ImportError(f"the dashboard needs wandb-workspaces: {INSTALL}") from None
    return wr


def config_value(config: dict[str, Any], key: str) -> Any:
    """`config[a][b]` for `key="a.b"` (KeyError when absent)."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _optimizer(config: dict[str, Any], job_type: str, label: str | None = None) -> str:
    """The run's optimizer: the cell's label (`sam+swa`), its job type, else the config's preset name."""
    if label or job_type not in NOT_OPTIMIZER:
        return label or job_type
    try:
        return str(config_value(config, "optimizer.name"))
    except KeyError:
        return "?"


def sweep_from_dir(sweep_dir: str | Path, project: str | None = None, entity: str | None = None) -> Sweep:
    """The sweep's runs from its job dirs: `run-<id>.wandb` files, `results.json` for labels and W&B settings."""
    root = Path(sweep_dir)
    jobs = job_dirs(root)
    if not jobs:
        fail("sweep_dir", str(root), "no job directories (no results.json or .hydra/)")
    results = {j: r for j in jobs if (r := read_results(j)) is not None}
    logged = [r for r in results.values() if (r.config.get("logger") or {}).get("name") == "wandb"]
    runs = local_runs(jobs if root in jobs else [*jobs, root])
    cells = [r for r in runs if r.job_type != "report"]
    reports = [r for r in runs if r.job_type == "report"]
    if not cells and not logged:
        fail("sweep_dir", str(root), "its cells logged no W&B runs (logger is not wandb); rerun with logger=wandb")
    w = (logged[0].config["logger"].get("wandb") or {}) if logged else {}
    group = Counter(r.group for r in cells).most_common(1)[0][0] if cells else (w.get("group") or root.name)
    sweep = Sweep(
        project=project or _first(r.project for r in cells) or w.get("project") or "landscape_sweep",
        entity=entity or _first(r.entity for r in cells) or w.get("entity") or "",
        group=group,
        cells=[_run(r, results.get(r.job_dir)) for r in cells if r.group == group],
        reports=[_run(r) for r in reports],
        report_group=reports[-1].group if reports else group,
        offline_runs=sorted({_sync_pattern(root, r.path) for r in runs if r.path.parent.name.startswith("offline-")}),
    )
    if len(sweep.cells) < len(cells):
        sweep.notes.append(f"{len(cells) - len(sweep.cells)} run(s) of another W&B group than {group}")
    if not cells:
        sweep.cells = _cells_from_results(logged)
        sweep.notes.append("no run-<id>.wandb files in the job dirs: metric keys from results.json")
    return sweep


def _first(values: Iterable[str]) -> str | None:
    return next((v for v in values if v), None)


def _run(run: LocalRun, result: CellResult | None = None) -> Run:
    label = result.cell.get("optimizer") if result is not None else None
    return Run(run.id, run.job_type, _optimizer(run.config, run.job_type, label), run.config, run.summary)


def _sync_pattern(root: Path, run_file: Path) -> str:
    """`<sweep>/*/wandb/offline-run-*` for a cell's run, `<sweep>/wandb/offline-run-*` for the sweep's own."""
    job = run_file.parents[2]
    where = job if job == root else root / "*" if job.parent == root else job
    return str(where / "wandb" / "offline-run-*")


def _cells_from_results(results: list[CellResult]) -> list[Run]:
    """Runs as the cells' results say they were logged (`tracking.summary_metrics`): run ids unknown."""
    from landscape_sweep.pipeline.tracking import summary_metrics  # deferred: tracking imports Lightning (torch)

    return [
        Run("", "", _optimizer(r.config, "", r.cell.get("optimizer")), r.config, summary_metrics(r)) for r in results
    ]


def online_api(what: str) -> Any:
    """A `wandb.Api`, or `Unavailable` naming why W&B cannot be reached (`what`: the option that needs it)."""
    mode = os.environ.get("WANDB_MODE", "")
    if mode in OFFLINE_MODES:
        raise Unavailable(f"{what}: needs W&B online, but WANDB_MODE={mode}; once online: unset it, `wandb login`")
    import wandb

    try:
        return wandb.Api(timeout=20)
    except Exception as e:  # no API key, no network, refused credentials: wandb raises several types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise Unavailable(f"{what}: W&B cannot be reached ({first}); needs network and `wandb login`") from None


def sweep_from_wandb(group: str, project: str, entity: str | None = None) -> Sweep:
    """The runs of a W&B group, read through the W&B API (online only)."""
    api = online_api(f"group={group!r}")
    entity = entity or api.default_entity or ""
    runs = list(api.runs(f"{entity}/{project}", filters={"group": group}))
    if not runs:
        fail("group", group, f"no runs of that group in {entity}/{project}")
    conv = [Run(r.id, r.job_type or "", "", dict(r.config), dict(r.summary_metrics)) for r in runs]
    for r in conv:
        r.optimizer = _optimizer(r.config, r.job_type) if r.job_type != "report" else ""
    return Sweep(
        project=project,
        entity=entity,
        group=group,
        cells=[r for r in conv if r.job_type != "report"],
        reports=[r for r in conv if r.job_type == "report"],
        report_group=group,
    )


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def metric_sections(keys: set[str]) -> tuple[list[tuple[str, list[tuple[str, str]]]], list[str]]:
    """[(section, [(summary key, label)])] for the scalar keys the runs logged, and a note per key left out."""
    order = {m: i for i, m in enumerate(PATH_METHODS)}  # registry order, then methods it does not know
    methods = sorted({m[1] for k in keys if (m := BARRIER.match(k))}, key=lambda m: (order.get(m, len(order)), m))
    sections = [("Barriers", [(f"landscape/{m}/loss_barrier", f"{method_label(m)} loss barrier") for m in methods])]
    notes = [] if methods else ["no run logged landscape/<method>/loss_barrier: no barrier panels"]
    for title, wanted in FIXED.items():
        sections.append((title, [(k, label) for k, label in wanted if k in keys]))
        notes += [f"no run logged {k}: no {label} panels" for k, label in wanted if k not in keys]
    ood = sorted(k for k in keys if OOD.match(k))
    sections.append(("Out of distribution", [(k, k) for k in ood]))
    if not ood:
        notes.append("no run logged OOD metrics (ood/<name>/acc, ood_gap): no OOD panels")
    return [(t, items) for t, items in sections if items], notes


def x_axes(cells: list[Run], wanted: list[str] | None = None) -> tuple[list[str], list[str]]:
    """The config keys to plot against, and notes: `wanted`, else those of X_KEYS that vary (at least one)."""
    notes, xs, single = [], [], []
    for key in wanted or X_KEYS:
        values = set()
        for r in cells:
            with contextlib.suppress(KeyError):
                values.add(json.dumps(config_value(r.config, key), sort_keys=True))
        if not values and wanted:
            fail("--x", key, "no run's config has that key; give a config key such as model.width")
        if not values:
            notes.append(f"no run's config has {key}: no vs-{key} panels")
        elif wanted or len(values) > 1:
            xs.append(key)
        else:
            single.append((key, values.pop()))
    if not xs and single:
        xs.append(single.pop(0)[0])
    return xs, notes + [f"{k} is {v} in every run: no vs-{k} panels" for k, v in single]


def _scalar_keys(runs: list[Run]) -> set[str]:
    return {k for r in runs for k, v in r.summary.items() if _number(v)}


def _typed_keys(run: Run, kind: str) -> list[str]:
    """The run's summary keys holding a `kind` object (`image-file`, `table-file`)."""
    return sorted(k for k, v in run.summary.items() if isinstance(v, dict) and v.get("_type") == kind)


def build_report(sweep: Sweep, x_keys: list[str] | None = None) -> tuple[Any, list[str]]:
    """The report of the sweep (a `wandb_workspaces.reports.v2.Report`) and the notes on what was left out."""
    wr = workspaces()
    from wandb_workspaces import expr

    for name, value in (("group", sweep.group), ("report group", sweep.report_group)):
        if "'" in value or '"' in value:
            fail(name, value, "must not contain quotes (a W&B report filter cannot hold them)")
    if not sweep.cells:
        fail("group", sweep.group, "no cell runs (only report runs) to plot")
    xs, notes = x_axes(sweep.cells, x_keys)
    sections, metric_notes = metric_sections(_scalar_keys(sweep.cells))
    notes = [*sweep.notes, *notes, *metric_notes]
    opts = sorted({r.optimizer for r in sweep.cells})
    color = {o: COLORS[i % len(COLORS)] for i, o in enumerate(opts)}
    settings = {r.id: wr.RunSettings(color=color[r.optimizer]) for r in sweep.cells if r.id}

    def cells_runset() -> Any:
        filters = [expr.Metric("Group") == sweep.group, expr.Metric("JobType") != "report"]
        return wr.Runset(name=f"runs of {sweep.group}", filters=filters, run_settings=dict(settings))

    legend = ", ".join(f"{o} {color[o]}" for o in opts)
    blocks: list[Any] = [
        wr.P(
            f"W&B group {sweep.group} of project {sweep.project}: {len(sweep.cells)} runs, one point each; "
            f"colour = optimizer ({legend}). Built by landscape_sweep.dashboard."
        )
    ]
    w = 12 if len(xs) <= 2 else 8
    per_row = 24 // w
    for title, metrics in sections:
        panels = [
            wr.ScatterPlot(
                title=f"{label} vs {x.rsplit('.', 1)[-1]}",
                x=wr.Config(x),
                y=wr.SummaryMetric(key),
                log_x=True if x in LOG_X else None,
                layout=wr.Layout(x=n % per_row * w, y=n // per_row * 6, w=w, h=6),
            )
            for n, ((key, label), x) in enumerate((m, x) for m in metrics for x in xs)
        ]
        blocks += [wr.H2(title), wr.PanelGrid(runsets=[cells_runset()], panels=panels)]
    report_panels, report_notes = _report_panels(wr, sweep)
    notes += report_notes
    if report_panels:
        runset = wr.Runset(
            name="sweep report",
            filters=[expr.Metric("Group") == sweep.report_group, expr.Metric("JobType") == "report"],
        )
        blocks += [wr.H2("Sweep report"), wr.PanelGrid(runsets=[runset], panels=report_panels)]
    if notes:
        blocks += [wr.H2("Left out"), wr.UnorderedList(items=notes)]
    report = wr.Report(
        project=sweep.project,
        entity=sweep.entity,
        title=f"Loss landscape sweep {sweep.group}"[:128],
        description="Barriers, sharpness and generalization vs width and depth, by optimizer",
        width="fluid",
        blocks=blocks,
    )
    return report, notes


def _report_panels(wr: Any, sweep: Sweep) -> tuple[list[Any], list[str]]:
    """The latest report run's τ table, sweep table and figures, as logged (notes for what it lacks)."""
    if not sweep.reports:
        return [], ["no report run (job_type=report): `python -m landscape_sweep.report <sweep_dir> --wandb` logs one"]
    run = sweep.reports[-1]
    tables = _typed_keys(run, "table-file")
    panels = [
        wr.WeavePanelSummaryTable(table_name=t, layout=wr.Layout(w=24, h=10))
        for t in ("kendall_tau", "sweep_results")
        if t in tables
    ]
    notes = [] if "kendall_tau" in tables else ["the report run logged no kendall_tau table: no τ panel"]
    panels += [
        wr.MediaBrowser(title=k.split("/", 1)[-1], media_keys=[k], num_columns=1, layout=wr.Layout(w=12, h=10))
        for k in _typed_keys(run, "image-file")
    ]
    return panels, notes


def report_json(report: Any) -> dict[str, Any]:
    """The report model as JSON: exactly the view `.save()` sends to W&B."""
    return report._to_model().model_dump(mode="json", by_alias=True, exclude_none=True)


def keep_id(report: Any, path: str | Path) -> None:
    """Give `report` the id of the one published earlier from `path` (same project), so publishing updates it."""
    try:
        old = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return
    project = old.get("project") or {}
    if old.get("id") and project.get("name") == report.project and report.entity in ("", project.get("entityName")):
        report.id, report.entity = old["id"], project.get("entityName") or ""


def publish(report: Any, api: Any) -> str:
    """Save the report to W&B, its run sets pointed at the report's project; returns its URL."""
    wr = workspaces()
    try:
        report.entity = report.entity or api.default_entity
        for grid in (b for b in report.blocks if isinstance(b, wr.PanelGrid)):
            for rs in grid.runsets:
                rs.entity, rs.project = report.entity, report.project
        report.save()
    except Exception as e:  # network, permissions, a project W&B does not know
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise Unavailable(f"--publish: W&B refused the report ({first})") from None
    return report.url


def panel_count(report: Any) -> Counter:
    """Panels per section title."""
    wr = workspaces()
    counts: Counter = Counter()
    title = ""
    for b in report.blocks:
        if isinstance(b, wr.PanelGrid):
            counts[title] += len(b.panels)
        elif isinstance(b, wr.H2):
            title = str(b.text)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m landscape_sweep.dashboard", description=__doc__.split("\n\n")[0])
    ap.add_argument("target", help="a sweep directory, or a W&B group name (then --project, maybe --entity)")
    ap.add_argument("--project", help="W&B project (default: the runs' own)")
    ap.add_argument("--entity", help="W&B entity (default: the runs' own, else your default entity)")
    ap.add_argument("--x", action="append", metavar="KEY", help=f"x-axis config key, repeatable (default: {X_KEYS})")
    ap.add_argument("--out", help=f"definition file (default: <sweep_dir>/{DASHBOARD_NAME}, ./dashboard-<group>.json)")
    ap.add_argument("--publish", action="store_true", help="also save the report to W&B (network, `wandb login`)")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    prog = "landscape_sweep.dashboard"
    try:
        workspaces()
        api = online_api("--publish") if args.publish else None
        target = Path(args.target)
        if target.is_dir():
            sweep, out = sweep_from_dir(target, args.project, args.entity), target / DASHBOARD_NAME
        elif args.project:
            sweep, out = sweep_from_wandb(args.target, args.project, args.entity), Path(f"dashboard-{args.target}.json")
        else:
            fail("target", args.target, "not a directory; a W&B group name needs --project (and maybe --entity)")
        report, notes = build_report(sweep, args.x)
        path = Path(args.out or out)
        keep_id(report, path)
        spec = report_json(report)  # before publishing: run sets name no project id (looked up online)
        atomic_write_text(path, json.dumps(spec, indent=1) + "\n")
        url = publish(report, api) if args.publish else None
        if url:
            spec["id"], spec["project"]["entityName"] = report.id, report.entity
            atomic_write_text(path, json.dumps(spec, indent=1) + "\n")
        counts = panel_count(report)
        print(f"dashboard: {path} ({sum(counts.values())} panels: {', '.join(f'{t} {n}' for t, n in counts.items())})")
        for note in notes:
            print(f"left out: {note}")
        if url:
            print(f"published: {url}")
        else:
            print("to publish it once online (network and `wandb login`):")
            if sweep.offline_runs:
                print(f"  wandb sync {' '.join(sweep.offline_runs)}")
            print(f"  python -m {prog} {shlex.join(argv)} --publish")
    except (ImportError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except Unavailable as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

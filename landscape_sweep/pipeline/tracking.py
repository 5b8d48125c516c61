"""Experiment tracking for one cell: one W&B run (offline by default) or Lightning CSV logs, or nothing.

The W&B run lives in `<job_dir>/wandb/`, and so do W&B's other files of the run (`wandb_dirs`: artifact staging
of tables and plots, which an offline run needs until `wandb sync`, caches, the service's debug log), set for the
cell only; `wandb.finish()` and the service's teardown always run (see `Tracker.close`). Per-endpoint
metrics carry a `seed<k>/` prefix so all endpoints of a cell share one run. Summary names are chosen so a
dashboard can plot them against `model.depth`, `model.width`, `optimizer` from the run config (`wandb_name`);
each summary has `<name>_std` and `<name>_n` beside it (over endpoints, or endpoint pairs for paths).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from landscape_sweep.pipeline import process
from landscape_sweep.pipeline.artifacts import CURVE_COLUMNS, curve_rows
from landscape_sweep.results import CellResult, cell_stats

log = logging.getLogger(__name__)

ENDPOINT_NAMES = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "test_loss": "test/loss",
    "test_acc": "test/acc",
}


def wandb_name(measure: str) -> str:
    """W&B summary name of a `cell_stats` measure: `test/acc`, `gen_gap`, `sharpness/…`, `landscape/<method>/…`,
    and as they are `ood/<name>/…`, `ood_gap` and `instability/<k>/…`; `stable_epoch` as `instability/stable_epoch`."""
    if measure.startswith(("ood/", "instability/")) or measure == "ood_gap":
        return measure
    if measure == "stable_epoch":
        return "instability/stable_epoch"
    if "/" in measure and not measure.startswith("block/"):  # block/…: per-block curvature, sharpness/block/…
        return f"landscape/{measure}"
    if measure in ENDPOINT_NAMES:
        return ENDPOINT_NAMES[measure]
    return measure if measure == "gen_gap" else f"sharpness/{measure}"


def summary_metrics(result: CellResult) -> dict[str, float]:
    """Every measure of the cell under its W&B name, with `_std` and `_n`."""
    out: dict[str, float] = {"num_params": result.cell.get("num_params")}
    for measure, stat in cell_stats(result).items():
        name = wandb_name(measure)
        out.update({name: stat.mean, f"{name}_std": stat.std, f"{name}_n": stat.n})
    return {k: v for k, v in out.items() if v is not None}


class ScopedEnv:
    """Environment variables set for a while, then restored exactly (unset ones unset again)."""

    def __init__(self, values: dict[str, str]):
        self.saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)

    def restore(self) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self.saved = {}


def wandb_dirs(job_dir: Path) -> dict[str, str]:
    """Where W&B keeps a cell's files outside the run dir, unless the user set them: all in `<job_dir>/wandb/`
    (defaults: ~/.local/share/wandb staging, ~/.cache/wandb, `./artifacts`)."""
    dirs = {"WANDB_DATA_DIR": "data", "WANDB_CACHE_DIR": "cache", "WANDB_ARTIFACT_DIR": "artifacts"}
    return {k: str(job_dir / "wandb" / sub) for k, sub in dirs.items() if not os.environ.get(k)}


def wandb_settings(w: dict[str, Any]) -> dict[str, Any]:
    """`wandb.Settings` of a cell's run: what the run records (config, metrics, summaries, tables, images in the
    offline `run-<id>.wandb` file) and none of W&B's probes and scans, which a sweep of many short runs pays per run
    and does not need (results.json keeps the package versions and the config)."""
    return {
        "silent": True,
        "console": "off",  # no console capture: the cell's log is Hydra's job log
        "x_disable_stats": True,  # no system-metrics sampling
        "x_disable_meta": True,  # no system metadata probe (OS, CPU/GPU/disk inventory, program, ...)
        "x_disable_machine_info": True,  # no machine/git info collected before the run starts
        "disable_git": True,  # no git probing (GitPython, git subprocesses, diff patches)
        "disable_code": True,  # no code capture
        "save_code": False,
        "disable_job_creation": True,  # no W&B Launch job artifact
        "label_disable": True,  # no probing of the main module's docstring for labels
        "sagemaker_disable": True,  # no SageMaker environment probe
        "x_save_requirements": bool(w.get("save_requirements", False)),  # a scan of every installed package
    }


def start_wandb_run(cfg: dict[str, Any], job_dir: Path, *, group: str, job_type: str, name: str) -> Any:
    """The cell's W&B run; the W&B service it starts writes its log (`core-debug-*.log`) into the job dir too."""
    import wandb

    process.defer_wandb_launch()  # wandb.init imports it for W&B Launch inputs: none here (process.py)
    w = cfg["logger"]["wandb"]
    service_env = ScopedEnv({"XDG_CACHE_HOME": str(job_dir / "wandb" / "cache")})  # read when the service starts
    try:
        return wandb.init(
            project=w.get("project"), entity=w.get("entity"), group=w.get("group") or group,
            job_type=w.get("job_type") or job_type, tags=[str(t) for t in (w.get("tags") or [])], name=name,
            config=cfg, dir=str(job_dir), mode=os.environ.get("WANDB_MODE") or w.get("mode") or "offline",
            reinit="create_new", settings=wandb.Settings(**wandb_settings(w)),
        )  # fmt: skip
    finally:
        service_env.restore()


class Starting:
    """A call running in a background thread (a W&B run's start); `result()` waits for it and re-raises its error."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._call, args=(fn, args, kwargs), name="wandb-start", daemon=True)
        self.thread.start()

    def _call(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> None:
        try:
            self.value = fn(*args, **kwargs)
        except BaseException as e:  # handed to the thread that waits
            self.error = e

    def result(self) -> Any:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value


class Tracker:
    """Owns the cell's W&B run (if any) and hands Lightning a logger for each endpoint.

    The W&B run starts in a background thread (importing wandb, starting W&B's service, initialising the run: ~1 s
    on 2 busy cores, of which 0.2 s is waiting for the service) while the cell loads its data; `wait()` (the cell
    calls it before training; `run`, the Lightning loggers and the log calls too) waits for it, adding up the
    waiting in `wait_s`, and raises an error of the start, which fails the cell as before.
    """

    def __init__(self, cfg: dict[str, Any], job_dir: Path, *, group: str, job_type: str, name: str):
        self.kind = cfg["logger"]["name"]
        self.job_dir = job_dir
        self.wait_s = 0.0
        self._run: Any = None
        self._starting: Starting | None = None
        self.env: ScopedEnv | None = None
        if self.kind == "wandb":
            self.env = ScopedEnv(wandb_dirs(job_dir))
            self._starting = Starting(start_wandb_run, cfg, job_dir, group=group, job_type=job_type, name=name)

    def wait(self) -> Any:
        """The cell's W&B run (None without W&B), once started."""
        if self._starting is not None:
            t0, starting, self._starting = time.perf_counter(), self._starting, None
            try:
                self._run = starting.result()
            finally:
                self.wait_s += time.perf_counter() - t0
        return self._run

    @property
    def run(self) -> Any:
        return self.wait()

    def lightning_logger(self, seed: int | str) -> Logger | bool:
        """The Lightning logger of one endpoint (False: none); `seed`: its seed or its run's name (a str)."""
        if self.kind == "wandb":
            return WandbLogger(experiment=self.run)
        if self.kind == "csv":
            return CSVLogger(
                save_dir=str(self.job_dir), name="csv", version=seed if isinstance(seed, str) else f"seed{seed}"
            )
        return False

    def log(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(metrics)

    def summary_of(self, result: CellResult) -> None:
        """Update the run summary with every measure the result holds so far."""
        if self.run is not None:
            self.run.summary.update(summary_metrics(result))

    def log_cell(self, result: CellResult, files: dict[str, Path]) -> None:
        """Summaries, one table + line plots per path method, Hessian plots and the cell PNG (W&B only)."""
        if self.run is None:
            return
        import wandb

        self.summary_of(result)
        payload: dict[str, Any] = {**path_tables(result), **hessian_plots(result)}
        if files.get("connectivity_png"):
            payload["cell/connectivity"] = wandb.Image(str(files["connectivity_png"]))
        if files.get("surfaces_png"):
            payload["cell/surfaces"] = wandb.Image(str(files["surfaces_png"]))
        if payload:
            self.run.log(payload)

    def close(self, exit_code: int = 0) -> None:
        """Finish the run and stop the W&B service (the next cell starts its own, logging into its own dir); a
        run still starting is waited for first, and an error of its start that nothing raised yet is logged."""
        try:
            try:
                self.wait()
            except Exception as e:
                log.warning("W&B run did not start: %s", " ".join(str(e).split()) or type(e).__name__)
            if self._run is not None:
                import wandb

                self._run.finish(exit_code=exit_code)
                self._run = None
                wandb.teardown()
        finally:
            if self.env is not None:
                self.env.restore()
                self.env = None


def path_tables(result: CellResult) -> dict[str, Any]:
    """`connectivity/<method>` tables and line plots of the train, test and each OOD set's loss along every path."""
    import wandb

    payload: dict[str, Any] = {}
    for method in result.methods():
        rows = curve_rows([p for p in result.connectivity if p.method == method])
        payload[f"connectivity/{method}"] = wandb.Table(
            columns=["pair", *CURVE_COLUMNS[2:]], data=[[r[0], *r[2:]] for r in rows]
        )
    paths = result.connectivity
    curves = {split: [getattr(p, f"{split}_loss") for p in paths] for split in ("train", "test")}
    for name in result.ood_names():  # each shifted set: plots/ood_<name>_loss_along_paths
        curves[f"ood_{name}"] = [((p.ood or {}).get(name) or {}).get("loss") for p in paths]
    for split, losses in curves.items():
        series = [(p, ys) for p, ys in zip(paths, losses) if ys is not None]
        if series:
            payload[f"plots/{split}_loss_along_paths"] = wandb.plot.line_series(
                xs=series[0][0].t, ys=[ys for _, ys in series],
                keys=[f"{p.method} {p.pair[0]}-{p.pair[1]}" for p, _ in series], title=f"{split} loss along paths",
                xname="t",
            )  # fmt: skip
    return payload


def hessian_plots(result: CellResult) -> dict[str, Any]:
    """Per endpoint: the top Hessian eigenvalues as bars and the SLQ spectrum (when computed) as a scatter."""
    import wandb

    payload: dict[str, Any] = {}
    for e in result.endpoints:
        spec, eigs = e.sharpness.get("hessian_spectrum"), e.sharpness.get("hessian_top_eigs")
        if spec:
            table = wandb.Table(columns=["eigenvalue", "weight"], data=list(zip(spec["nodes"], spec["weights"])))
            payload[f"plots/seed{e.seed}_hessian_spectrum"] = wandb.plot.scatter(
                table, "eigenvalue", "weight", title=f"seed {e.seed}: Hessian spectrum (SLQ nodes)"
            )
        if eigs:
            table = wandb.Table(columns=["rank", "eigenvalue"], data=[[i + 1, v] for i, v in enumerate(eigs)])
            payload[f"plots/seed{e.seed}_hessian_top_eigs"] = wandb.plot.bar(
                table, "rank", "eigenvalue", title=f"seed {e.seed}: top Hessian eigenvalues"
            )
    return payload

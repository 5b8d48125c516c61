"""Every bad input fails before anything runs: exit 2, one line on stderr naming the key, the value and what is
allowed, nothing written under the output root.

Every kind goes through `main(argv)` in-process (the CLI's entry, exit code and stderr included; about a second
each); one also runs `python -m landscape_sweep` in a subprocess.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import pytest
import torch

from landscape_sweep.pipeline.app import main
from landscape_sweep.pipeline.prechecks import THREADS_PER_CORE, available_memory, usable_cpus

NO_GPU = not (torch.cuda.is_available() or torch.backends.mps.is_available())
ROOT_ON_LINUX = sys.platform.startswith("linux") and os.geteuid() == 0
NEEDS_NO_GPU = pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
NEEDS_ROOT = pytest.mark.skipif(not ROOT_ON_LINUX, reason="only root sees /proc as writable (os.access)")

# (kind, command-line arguments, what the one line must contain[, skip mark]); {file}: a regular file under the root
KINDS = [
    ("unknown arch", ["model.arch=vgg"], ["model.arch='vgg'", "mlp, cnn, resnet, wide_resnet"]),
    ("unknown dataset", ["data.name=imagenet"], ["data.name='imagenet'", "mnist1d"]),
    ("depth < 1", ["model.depth=0"], ["model.depth=0", ">= 1"]),
    ("negative width", ["model.width=-3"], ["model.width=-3", ">= 1"]),
    ("fractional width", ["model.width=2.5"], ["model.width=2.5", "integer"]),
    ("unknown norm", ["model.norm=groupnorm"], ["model.norm='groupnorm'", "batchnorm"]),
    ("unknown activation", ["model.activation=swish"], ["model.activation='swish'", "relu"]),
    ("unknown model key", ["+model.dropout=0.1"], ["model.dropout", "allowed: activation, arch, depth, norm, width"]),
    ("unknown top-level key", ["+foo=1"], ["foo", "unknown key; allowed:"]),
    ("no endpoint seeds", ["endpoints.seeds=[]"], ["endpoints.seeds=[]", "non-empty"]),
    ("duplicate seeds", ["endpoints.seeds=[0,0]"], ["endpoints.seeds=[0, 0]", "duplicates"]),
    ("non-integer seed", ["seed=abc"], ["seed='abc'", "integer"]),
    ("train_size < 1", ["data.train_size=0"], ["data.train_size=0", ">= 1"]),
    ("label noise > 1", ["data.label_noise=1.5"], ["data.label_noise=1.5", "[0, 1]"]),
    ("label noise < 0", ["data.label_noise=-0.1"], ["data.label_noise=-0.1", "[0, 1]"]),
    ("negative val_size", ["data.val_size=-1"], ["data.val_size=-1", "count >= 0"]),
    ("batch size < 1", ["data.batch_size=0"], ["data.batch_size=0", ">= 1"]),
    ("eval batch size < 1", ["data.eval_batch_size=0"], ["data.eval_batch_size=0", ">= 1"]),
    (
        "batchnorm MLP with 1-sample batches",
        ["model.norm=batchnorm", "data.batch_size=1"],
        ["data.batch_size=1", "BatchNorm needs 2 samples"],
    ),
    ("ood not a list", ["data.ood=shifted"], ["data.ood='shifted'", "must be a list of shifted test sets"]),
    ("unknown ood knob", ["data.ood=[{name:a,noise:1}]"], ["data.ood[0].noise", "unknown key", "iid_noise_scale"]),
    ("negative ood noise", ["data.ood=[{name:a,iid_noise_scale:-1}]"], ["data.ood[0].iid_noise_scale=-1", ">= 0"]),
    ("duplicate ood name", ["data.ood=[{name:a},{name:a,seed:2}]"], ["data.ood[1].name='a'", "duplicate"]),
    ("ood seed of the clean data", ["data.ood=[{name:a,seed:42}]"], ["data.ood[0].seed=42", "gen_seed=42"]),
    (
        "corruption on mnist1d",
        ["data.ood=[{name:a,corruption:contrast,severity:3}]"],
        ["data.ood[0].corruption='contrast'", "not available for mnist1d", "iid_noise_scale"],
    ),
    (
        "bad corruption severity",
        ["data=digits", "data.ood=[{corruption:contrast,severity:6}]"],
        ["data.ood[0].severity=6", "integer in [1, 5]"],
    ),
    (
        "unknown corruption",
        ["data=digits", "data.ood=[{corruption:fog,severity:1}]"],
        ["data.ood[0].corruption='fog'", "gaussian_noise"],
    ),
    ("ood on synthetic data", ["data=synthetic", "data.ood=[{name:a}]"], ["data.ood=", "synthetic has no shifted"]),
    ("negative lr", ["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "> 0"]),
    ("SAM under fp16", ["optimizer=sam", "trainer.precision=16-mixed"], ["precision=16-mixed", "bf16-mixed"]),
    ("max_epochs < 1", ["trainer.max_epochs=0"], ["max_epochs=0", ">= 1"]),
    ("threads 0", ["trainer.threads=0"], ["trainer.threads=0", "auto", "integer >= 1"]),
    ("threads word", ["trainer.threads=many"], ["trainer.threads='many'", "auto"]),
    ("checkpoint interval < 0", ["trainer.checkpoint_every_s=-1"], ["trainer.checkpoint_every_s=-1", ">= 0"]),
    ("epoch cut short", ["+trainer.limit_train_batches=0.5"], ["trainer.limit_train_batches=0.5", "whole epochs"]),
    ("max_steps", ["+trainer.max_steps=100"], ["trainer.max_steps=100", "must be -1", "whole epochs"]),
    ("stop_at accuracy > 1", ["trainer.stop_at.train_acc=1.5"], ["trainer.stop_at.train_acc=1.5", "<= 1"]),
    (
        "Lightning gradient clipping",
        ["+trainer.gradient_clip_val=1.0"],
        ["gradient_clip_val=1.0", "optimizer.grad_clip"],
    ),
    ("several devices", ["trainer.devices=4"], ["trainer.devices=4", "one cell runs on one device", "joblib"]),
    ("all devices", ["trainer.devices=-1"], ["trainer.devices=-1", "one cell runs on one device"]),
    ("auto devices", ["trainer.devices=auto"], ["trainer.devices='auto'", "must be 1"]),
    ("several nodes", ["+trainer.num_nodes=2"], ["trainer.num_nodes=2", "one cell runs on one device"]),
    ("ddp strategy", ["+trainer.strategy=ddp"], ["trainer.strategy='ddp'", "one cell runs on one device"]),
    ("removed ddp preset", ["trainer=ddp"], ["trainer/ddp", "available options in 'trainer': cpu default gpu"]),
    ("unknown precision", ["trainer.precision=fp16"], ["trainer.precision='fp16'", "bf16-mixed", "32-true"]),
    ("unknown accelerator", ["trainer.accelerator=tpux"], ["trainer.accelerator='tpux'", "auto, gpu, cpu"]),
    (
        "gpu without a gpu",
        ["trainer.accelerator=gpu"],
        ["trainer.accelerator='gpu'", "no such device on this machine", "trainer.accelerator=cpu"],
        NEEDS_NO_GPU,
    ),
    ("checkpoint epoch > max_epochs", ["landscape.checkpoint_epochs=[99]"], ["checkpoint_epochs=[99]", "1..30"]),
    ("unknown sharpness kind", ["landscape.sharpness.kinds=[bogus]"], ["kinds=['bogus']", "worst"]),
    ("unknown path method", ["landscape.connectivity.methods=[teleport]"], ["methods=['teleport']", "linear"]),
    ("too few path points", ["landscape.connectivity.num_points=1"], ["num_points=1", ">= 2"]),
    ("one trace probe", ["landscape.sharpness.trace_probes=1"], ["trace_probes=1", ">= 2"]),
    ("unknown logger", ["logger.name=tensorboard"], ["logger.name='tensorboard'", "wandb, csv, none"]),
    ("report facet not a list", ["report.facet=3"], ["report.facet=3", "list of config keys"]),
    (
        "unknown report option",
        ["+report.colour=red"],
        ["report.colour", "unknown key", "facet, select, unreached, wandb"],
    ),
    ("unknown optimizer preset", ["optimizer=nope"], ["optimizer/nope", "sgd"]),
    ("bad cell inside a grid", ["-m", "model.depth=2,0"], ["model.depth=0", ">= 1"]),
    ("output dir under a file", ["hydra.run.dir={file}/runs"], ["hydra.run.dir=", "output dir cannot be written"]),
    ("sweep dir under a file", ["-m", "hydra.sweep.dir={file}/s"], ["hydra.sweep.dir=", "Not a directory"]),
    (
        "output dir where even root cannot write",
        ["hydra.run.dir=/proc/landscape_sweep_probe/run"],
        ["hydra.run.dir='/proc/landscape_sweep_probe/run'", "output dir cannot be written"],
        NEEDS_ROOT,
    ),
]
LONG = "x" * 300  # a directory name over NAME_MAX (255 bytes on Linux file systems)
MANY_THREADS = THREADS_PER_CORE * usable_cpus() + 1
TOO_MANY_THREADS_HERE = pytest.mark.skipif(MANY_THREADS > 1024, reason="this machine allows every valid count")
FREE = available_memory()
DEPTH_1E6_FITS = pytest.mark.skipif(FREE is not None and FREE[0] > 140 * 2**30, reason="138 GiB fit here")
# ranges, not just types (issue 25, point 9): each of these passed the pre-check before and failed in every cell
KINDS += [
    ("negative endpoint seed", ["endpoints.seeds=[-1,0]"], ["endpoints.seeds=[-1, 0]", "[0, 2^32)"]),
    ("endpoint seed 2^32", ["endpoints.seeds=[0,4294967296]"], ["endpoints.seeds=[0, 4294967296]", "[0, 2^32)"]),
    ("negative cell seed", ["seed=-3"], ["seed=-3", "integer in [0, 2^32)"]),
    (
        "negative parent seed",
        ["endpoints.mode=spawn", "endpoints.spawn_epochs=[0,1]", "endpoints.parent_seed=-7"],
        ["endpoints.parent_seed=-7", "[0, 2^32)"],
    ),
    ("negative data seeds", ["endpoints.data_seeds=[-1,5,7]"], ["endpoints.data_seeds=[-1, 5, 7]", "[0, 2^32)"]),
    ("data seed 2^32", ["data.seed=4294967296"], ["data.seed=4294967296", "[0, 2^32)"]),
    ("negative generator seed", ["data.options.gen_seed=-1"], ["data.options.gen_seed=-1", "[0, 2^32)"]),
    ("lr beyond float32", ["optimizer.lr=1e308"], ["optimizer.lr=1e+308", "learning rate in (0, 10000]"]),
    ("absurd lr", ["optimizer.lr=1e5"], ["optimizer.lr=100000.0", "(0, 10000]", "practical use"]),
    ("absurd SWA lr", ["optimizer.swa.lr=1e6"], ["optimizer.swa.lr=1000000.0", "(0, 10000]"]),
    ("absurd curve lr", ["landscape.connectivity.curve.lr=1e6"], ["curve.lr=1000000.0", "(0, 10000]"]),
    ("weight decay beyond float32", ["optimizer.weight_decay=1e300"], ["weight_decay=1e+300", "float32"]),
    ("SAM rho beyond float32", ["optimizer=sam", "optimizer.rho=1e39"], ["optimizer.rho=1e+39", "> 0"]),
    ("data options a scalar", ["data.options=5"], ["data.options=5", "must be a mapping"]),
    ("unknown data option", ["+data.options.foo=1"], ["data.options=['foo']", "mnist1d takes only"]),
    ("data option out of range", ["data.options.num_train=0"], ["data.options.num_train=0", ">= 1"]),
    ("synthetic option out of range", ["data=synthetic", "data.options.num_classes=1"], ["num_classes=1", ">= 2"]),
    ("threads beyond any node", ["trainer.threads=100000"], ["trainer.threads=100000", "at most 1024", "OpenMP"]),
    (
        "threads beyond this machine",
        [f"trainer.threads={MANY_THREADS}"],
        [f"trainer.threads={MANY_THREADS}", f"at most {MANY_THREADS - 1} threads"],
        TOO_MANY_THREADS_HERE,
    ),
    ("stop_at a scalar", ["trainer.stop_at=5"], ["trainer.stop_at=5", "mapping", "train_acc, train_loss"]),
    ("surface settings a scalar", ["landscape.surface=5"], ["landscape.surface=5", "mapping", "num_points"]),
    ("report a scalar", ["report=5"], ["report=5", "mapping", "facet"]),
    ("endpoints a scalar", ["endpoints=5"], ["endpoints=5", "mapping", "seeds"]),
    ("sharpness settings null", ["landscape.sharpness=null"], ["landscape.sharpness=None", "mapping", "top_k"]),
    ("trainer group removed", ["~trainer"], ["trainer=None", "must be a mapping"]),
    ("wandb settings a scalar", ["logger.wandb=3"], ["logger.wandb=3", "mapping"]),
    ("tags a scalar", ["tags=3"], ["tags=3", "list"]),
    (
        "duplicate path methods",
        ["landscape.connectivity.methods=[linear,linear]"],
        ["methods=['linear', 'linear']", "duplicates", "same pairs twice"],
    ),
    ("duplicate sharpness kinds", ["landscape.sharpness.kinds=[worst,worst]"], ["kinds=['worst', 'worst']", "twice"]),
    ("duplicate checkpoint epochs", ["landscape.checkpoint_epochs=[1,1]"], ["checkpoint_epochs=[1, 1]", "twice"]),
    (
        "duplicate sharpness points",
        ["landscape.connectivity.sharpness_points=[0.5,0.5]"],
        ["sharpness_points=[0.5, 0.5]", "duplicates"],
    ),
    ("duplicate report facet", ["report.facet=[depth,depth]"], ["report.facet=['depth', 'depth']", "duplicates"]),
    ("unknown report facet", ["report.facet=[nope]"], ["report.facet='nope'", "not a cell field", "optimizer.lr"]),
    (
        "report facet on an analysis setting",
        ["report.facet=[landscape.sharpness.rho]"],
        ["report.facet='landscape.sharpness.rho'", "landscape.*", "did you mean optimizer.rho"],
    ),
    (
        "unknown report select key",
        ["+report.select={optimizer.lrr:1}"],
        ["report.select='optimizer.lrr'", "config key"],
    ),
    (
        "report select nested by a dotted override",
        ["+report.select.optimizer.lr=1"],
        ["report.select.optimizer={'lr': 1}", "+report.select={optimizer.<name>: <value>}"],
    ),
    (
        "unknown report facet in a grid",
        ["-m", "model.depth=1,2", "report.facet=[lr]"],
        ["report.facet='lr'", "optimizer.lr"],
    ),
    (
        "stale-lock seconds not a number",
        ["env:LANDSCAPE_SWEEP_LOCK_STALE_S=abc"],
        ["LANDSCAPE_SWEEP_LOCK_STALE_S='abc'", "> 0", "heartbeat"],
    ),
    ("run dir name too long", [f"hydra.run.dir={{root}}/{LONG}"], ["hydra.run.dir", "300 bytes", "NAME_MAX"]),
    (
        "job dir name too long",
        ["-m", "hydra.sweep.dir={root}/s", f"hydra.sweep.subdir={LONG}"],
        ["hydra.sweep.dir", "300 bytes", "NAME_MAX"],
    ),
    (
        "detach on the basic launcher",
        ["-m", "+hydra.launcher.detach=true"],
        ["hydra.launcher.detach=True", "BasicLauncher", "slurm or slurm_gpu only"],
    ),
    (
        "detach on joblib",
        ["-m", "hydra/launcher=joblib", "+hydra.launcher.detach=true"],
        ["hydra.launcher.detach=True", "JoblibLauncher", "n_jobs"],
    ),
    (
        "detach on the local launcher",
        ["-m", "hydra/launcher=local", "+hydra.launcher.detach=true"],
        ["hydra.launcher.detach=True", "LocalLauncher", "cells_per_job", "slurm or slurm_gpu only"],
    ),
    (
        "model too deep for memory",
        ["model.depth=1000000"],
        ["model.depth=1000000, model.width=64", "needs at least", "GiB available"],
        DEPTH_1E6_FITS,
    ),
    ("model far too deep", ["model.depth=100000000"], ["model.depth=100000000", "4.16e+11 parameters", "available"]),
    ("model too wide for memory", ["model.width=1000000"], ["model.width=1000000", "1e+12 parameters", "available"]),
    ("model too wide for any tensor", ["model.width=100000000000"], ["model.width=100000000000", "too large to exist"]),
    (
        "input too wide for memory",
        ["data=synthetic", "data.options.dim=1000000000"],
        ["this mlp on synthetic", "6.4e+10"],
    ),
    (
        "model too large for the SLURM memory",
        ["-m", "hydra/launcher=slurm", "model.depth=100000"],
        ["model.depth=100000", "needs at least 13.8 GiB", "hydra.launcher.mem_gb=8"],
    ),
]
BY_KIND = {k[0]: k for k in KINDS}


def _params(kinds) -> list:
    return [pytest.param(*k[:3], id=k[0], marks=list(k[3:])) for k in kinds]


def _args(args: list[str], root: Path, data_dir: Path) -> list[str]:
    (root / "file").write_text("")
    args = [a.replace("{file}", str(root / "file")).replace("{root}", str(root)) for a in args]
    return [a for a in args if not a.startswith("env:")] + [f"paths.data_dir={data_dir}"]


def _env(args: list[str]) -> dict[str, str]:
    """The environment variables a kind sets (`env:NAME=value` items)."""
    return dict(a.removeprefix("env:").split("=", 1) for a in args if a.startswith("env:"))


def _one_line(stderr: str, expected: list[str]) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("landscape_sweep: config error: "), lines[0]
    assert all(e in lines[0] for e in expected), (lines[0], expected)


def _nothing_written(root: Path) -> None:
    assert sorted(p.name for p in root.iterdir()) == ["file"], list(root.iterdir())  # no logs/, no probe left


def test_at_least_70_kinds():
    assert len(BY_KIND) == len(KINDS) >= 70


@pytest.mark.parametrize("kind,args,expected", _params(KINDS))
def test_bad_input_fails_in_one_line_and_writes_nothing(kind, args, expected, tmp_path, monkeypatch, capsys, data_dir):
    monkeypatch.setenv("LANDSCAPE_SWEEP_ROOT", str(tmp_path))
    for name, value in _env(args).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as e:
        main(_args(args, tmp_path, data_dir))
    assert e.value.code == 2, kind
    _one_line(capsys.readouterr().err, expected)
    _nothing_written(tmp_path)


# through a real process too (every kind above already runs through `main(argv)`): a grid, whose first (valid) cell
# is fully checked before the bad one, devices included, so a fresh interpreter's imports and accelerator probing
# happen before the one line
CLI_KINDS = ["bad cell inside a grid"]


def test_the_module_entry_point_is_the_cli(tmp_path, monkeypatch, capsys, data_dir):
    """What `python -m landscape_sweep` executes (landscape_sweep/__main__.py), run in this process."""
    monkeypatch.setenv("LANDSCAPE_SWEEP_ROOT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["landscape_sweep", *_args(["model.depth=0"], tmp_path, data_dir)])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("landscape_sweep", run_name="__main__")
    assert e.value.code == 2
    _one_line(capsys.readouterr().err, ["model.depth=0", ">= 1"])
    _nothing_written(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("kind,args,expected", _params(BY_KIND[k] for k in CLI_KINDS))
def test_bad_input_through_the_real_cli(kind, args, expected, run_cli, tmp_path, data_dir):
    proc = run_cli(_args(args, tmp_path, data_dir), check=False, data=False)
    assert proc.returncode == 2, proc.stderr
    _one_line(proc.stderr, expected)
    _nothing_written(tmp_path)


# --- the other commands: one line instead of a traceback (issue 25, point 9) ------------------------------------
def _completed_cell(job: Path, compose_cfg) -> Path:
    """A job dir holding a completed results.json of the default config (no endpoints: nothing to re-analyse)."""
    from landscape_sweep.pipeline.config import config_hash, validate

    config = validate(compose_cfg(["logger=none"]))
    record = {"schema": 2, "status": "completed", "error": None, "config_hash": config_hash(config), "config": config,
              "cell": {}, "endpoints": [], "connectivity": []}  # fmt: skip
    job.mkdir(parents=True)
    (job / "results.json").write_text(json.dumps(record))
    return job


ANALYZE_KINDS = [
    ("unknown landscape preset", ["landscape=fastt"], ["Could not find 'landscape/fastt'", "default fast thorough"]),
    ("unknown landscape key", ["landscape.foo=1"], ["Could not override 'landscape.foo'"]),
    ("duplicate methods", ["landscape.connectivity.methods=[linear,linear]"], ["duplicates", "(cell "]),
    ("epoch beyond the cell's", ["landscape.checkpoint_epochs=[99]"], ["checkpoint_epochs=[99]", "1..30", "(cell "]),
    ("stale-lock seconds", ["env:LANDSCAPE_SWEEP_LOCK_STALE_S=abc"], ["LANDSCAPE_SWEEP_LOCK_STALE_S='abc'"]),
    ("not an analysis key", ["model.width=3"], ["model.width=3: analyze takes landscape overrides only"]),
]


@pytest.mark.parametrize("kind,args,expected", _params(ANALYZE_KINDS))
def test_analyze_bad_input_fails_in_one_line(kind, args, expected, tmp_path, compose_cfg, monkeypatch, capsys):
    from landscape_sweep.analyze import main as analyze

    sweep = tmp_path / "sweep"
    job = _completed_cell(sweep / "0", compose_cfg)
    before = (job / "results.json").read_text()
    for name, value in _env(args).items():
        monkeypatch.setenv(name, value)
    assert analyze([str(sweep), *(a for a in args if not a.startswith("env:"))]) == 2, kind
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("landscape_sweep.analyze: config error: "), err
    assert all(e in err[0] for e in expected), (err[0], expected)
    assert sorted(p.name for p in job.iterdir()) == ["results.json"] and (job / "results.json").read_text() == before


@pytest.mark.parametrize("module", ["analyze", "status", "report", "resubmit"])
def test_a_dir_name_too_long_is_one_line_in_every_command(module, tmp_path, capsys):
    import importlib

    main_of = importlib.import_module(f"landscape_sweep.{module}" + (".__main__" if module == "report" else "")).main
    assert main_of([str(tmp_path / LONG)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"landscape_sweep.{module}: "), err
    assert "File name too long" in err or "no readable sweep.json" in err


def test_status_with_a_bad_stale_lock_setting_is_one_line(tmp_path, compose_cfg, monkeypatch, capsys):
    from landscape_sweep.status import main as status

    _completed_cell(tmp_path / "0", compose_cfg)
    monkeypatch.setenv("LANDSCAPE_SWEEP_LOCK_STALE_S", "-5")
    assert status([str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "landscape_sweep.status: LANDSCAPE_SWEEP_LOCK_STALE_S=-5.0: must be a finite number > 0 (seconds without a "
        "heartbeat after which another host's cell lock is stale; unset: 600)\n"
    )

"""Config composition, cell identity and run-dir names (bad values: test_bad_input.py)."""

from __future__ import annotations

import os
import re

import pytest
from omegaconf import OmegaConf

from landscape_sweep.pipeline.app import cell_overrides
from landscape_sweep.pipeline.config import CONF_DIR, config_changes, config_hash, run_stamp, validate


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_default_config_composes_and_validates(compose_cfg):
    c = validate(compose_cfg())
    assert c["data"]["name"] == "mnist1d" and c["model"]["arch"] == "mlp"
    assert c["endpoints"]["seeds"] == [0, 1, 2]
    assert {"seed", "data", "model", "optimizer", "trainer", "landscape", "logger", "paths"} <= set(c)


@pytest.mark.parametrize("group", ["data", "model", "optimizer", "trainer", "landscape", "logger"])
def test_every_group_option_composes(compose_cfg, group):
    options = group_options(group)
    assert options, group
    for opt in options:
        overrides = [f"{group}={opt}"]
        if group == "model" and opt == "wide_resnet":
            overrides.append("model.depth=10")
        validate(compose_cfg(overrides))


def test_experiments_and_debug_compose(compose_cfg):
    for exp in group_options("experiment"):
        validate(compose_cfg([f"experiment={exp}"]))
    validate(compose_cfg(["debug=fast"]))


def test_config_hash_ignores_run_only_keys(compose_cfg):
    base = validate(compose_cfg())
    same = validate(compose_cfg(["logger=none", "trainer.enable_progress_bar=false", "paths.log_dir=/elsewhere"]))
    other = validate(compose_cfg(["model.width=65"]))
    analysis = validate(compose_cfg(["landscape.checkpoint_epochs=[1]"]))
    assert config_hash(base) == config_hash(same)
    assert config_hash(base) != config_hash(other)
    assert config_hash(base) != config_hash(analysis)
    assert config_hash(base, training_only=True) == config_hash(analysis, training_only=True)


def test_sweep_expansion_includes_experiment_grid():
    multirun, jobs = cell_overrides(["-m", "experiment=mini_study", "endpoints.seeds=[0,1]"])
    assert multirun and len(jobs) == 18
    assert all(any(o.startswith("model.width=") for o in job) for job in jobs)
    multirun, jobs = cell_overrides(["-m", "model.depth=1,2,4", "model.width=16,64", "optimizer=sgd,adam"])
    assert len(jobs) == 12
    assert cell_overrides(["--cfg", "job"]) is None


def test_config_is_packaged_next_to_the_code():
    assert (CONF_DIR / "config.yaml").is_file()
    cfg = OmegaConf.load(CONF_DIR / "config.yaml")
    assert "defaults" in cfg


def test_config_changes_name_the_keys_that_change_a_cell(compose_cfg):
    base = validate(compose_cfg())
    other = validate(compose_cfg(["model.width=24", "landscape.connectivity.num_points=5", "logger=none"]))
    assert config_changes(base, other) == {
        "landscape.connectivity.num_points": (25, 5),
        "model.width": (64, 24),
    }  # logger (run-only) left out
    assert config_changes(base, base) == {}


def test_default_run_and_sweep_dirs_are_unique_and_sort_by_time(compose_cfg):
    cfg = compose_cfg()
    run, sweep = str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)
    stamp = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d{3}_\d+"
    assert re.fullmatch(rf".*/runs/{stamp}", run) and re.fullmatch(rf".*/multiruns/{stamp}", sweep)
    assert run.rsplit("/", 1)[1] == sweep.rsplit("/", 1)[1] and str(cfg.hydra.run.dir) == run  # one value per config
    stamps = [run_stamp() for _ in range(3)]
    assert stamps == sorted(stamps) and all(s.endswith(f"_{os.getpid()}") for s in stamps)


def test_per_block_off_keeps_the_identity_of_older_cells(compose_cfg):
    """`landscape.sharpness.per_block` came later: off, a cell hashes as a config without the key; on, it differs."""
    import copy

    base = validate(compose_cfg())
    older = copy.deepcopy(base)
    del older["landscape"]["sharpness"]["per_block"]
    assert base["landscape"]["sharpness"]["per_block"] is False and config_hash(base) == config_hash(older)
    on = validate(compose_cfg(["landscape.sharpness.per_block=true"]))
    assert config_hash(on) != config_hash(base)
    assert config_hash(on, training_only=True) == config_hash(base, training_only=True)

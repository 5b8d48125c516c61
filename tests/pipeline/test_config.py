"""Config composition, validation messages and cell identity."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from landscape_sweep.pipeline.app import cell_overrides, precheck
from landscape_sweep.pipeline.config import CONF_DIR, ConfigError, config_hash, validate


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_default_config_composes_and_validates(compose_cfg):
    c = validate(compose_cfg())
    assert c["data"]["name"] == "mnist1d" and c["model"]["arch"] == "mlp"
    assert c["endpoints"]["seeds"] == [0, 1]
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


BAD = [
    (["model.arch=vgg"], "model.arch='vgg'", "mlp, cnn, resnet, wide_resnet"),
    (["data.name=imagenet"], "data.name='imagenet'", "mnist1d"),
    (["model.depth=0"], "model.depth=0", ">= 1"),
    (["model.width=-3"], "model.width=-3", ">= 1"),
    (["model.width=2.5"], "model.width=2.5", "integer"),
    (["endpoints.seeds=[]"], "endpoints.seeds=[]", "non-empty"),
    (["endpoints.seeds=[0,0]"], "endpoints.seeds=[0, 0]", "duplicates"),
    (["data.train_size=0"], "data.train_size=0", ">= 1"),
    (["data.label_noise=1.5"], "data.label_noise=1.5", "[0, 1]"),
    (["data.label_noise=-0.1"], "data.label_noise=-0.1", "[0, 1]"),
    (["+model.dropout=0.1"], "model.dropout", "allowed: activation, arch, depth, norm, width"),
    (["landscape.checkpoint_epochs=[99]"], "landscape.checkpoint_epochs=[99]", "1..30"),
    (["logger.name=tensorboard"], "logger.name='tensorboard'", "wandb, csv, none"),
]


@pytest.mark.parametrize("overrides,key,allowed", BAD)
def test_bad_values_fail_with_one_line(compose_cfg, overrides, key, allowed):
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg(overrides))
    msg = str(e.value)
    assert "\n" not in msg and key in msg and allowed in msg, msg


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


def test_precheck_catches_a_bad_cell_inside_a_grid(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("LANDSCAPE_SWEEP_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match=r"model.depth=0: must be an integer >= 1"):
        precheck(["-m", "model.depth=2,0", f"paths.data_dir={data_dir}"])
    assert not (tmp_path / "logs").exists()  # nothing written


def test_precheck_unwritable_output_dir(tmp_path, data_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.access(ro, os.W_OK):  # root ignores permission bits: use a path under a file instead
            (tmp_path / "file").write_text("")
            target = tmp_path / "file" / "runs"
        else:
            target = ro / "runs"
        with pytest.raises(ConfigError, match=r"hydra.run.dir=.*output dir cannot be written"):
            precheck([f"hydra.run.dir={target}", f"paths.data_dir={data_dir}"])
    finally:
        ro.chmod(0o700)


def test_config_is_packaged_next_to_the_code():
    assert (CONF_DIR / "config.yaml").is_file()
    cfg = OmegaConf.load(CONF_DIR / "config.yaml")
    assert "defaults" in cfg

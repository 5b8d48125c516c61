"""conf/data/*.yaml: one preset per dataset, the common keys as composed, and options that load_data accepts."""

import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from landscape_sweep.data import DATASETS, load_data
from landscape_sweep.data import tabular as tab

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"
COMMON = [
    "name", "root", "train_size", "label_noise", "val_size", "batch_size", "eval_batch_size", "augment",
    "download", "seed", "options", "ood",
]  # fmt: skip


def _cfg(name):
    """The preset as it composes: the presets in its `defaults` list first, then its own keys."""
    raw = OmegaConf.load(CONF / f"{name}.yaml")
    parents = [OmegaConf.create(_cfg(p)) for p in raw.pop("defaults", []) if p != "_self_"]
    return OmegaConf.to_container(OmegaConf.merge(*parents, raw), resolve=False)


def test_one_file_per_dataset():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == sorted(DATASETS)


@pytest.mark.parametrize("name", DATASETS)
def test_common_keys_and_defaults(name):
    cfg = _cfg(name)
    assert list(cfg) == COMMON and cfg["name"] == name and cfg["root"] == "${paths.data_dir}"
    assert cfg["train_size"] is None and cfg["label_noise"] == 0.0 and cfg["val_size"] == 0
    assert cfg["download"] is False and cfg["seed"] == 0 and cfg["eval_batch_size"] == 1000
    assert cfg["augment"] is name.startswith(("cifar", "svhn"))
    assert cfg["batch_size"] == {"digits": 64}.get(name, 128)


def test_options_are_the_loader_defaults():
    sig = inspect.signature(tab.raw_synthetic).parameters
    assert _cfg("synthetic")["options"] == {k: p.default for k, p in sig.items() if k != "seed"}
    sig = inspect.signature(tab.mnist1d_args).parameters
    assert _cfg("mnist1d")["options"] == {k: p.default for k, p in sig.items()}


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_config_loads(name, tmp_path):
    cfg = _cfg(name)
    common = {k: cfg[k] for k in ("train_size", "label_noise", "val_size", "seed", "download", "augment")}
    b = load_data(name, tmp_path, **common, **cfg["options"])
    assert b.name == name and b.val is None

"""conf/data/: `mnist.yaml` is the one full preset; every other dataset inherits it and composes to its old values."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from landscape_sweep.data import DATASETS
from landscape_sweep.pipeline.config import CONF_DIR, validate

CONF = CONF_DIR / "data"
# conf/data/mnist.yaml as it composes: every key, in this order
MNIST = {
    "name": "mnist",
    "root": "${paths.data_dir}",
    "train_size": None,
    "label_noise": 0.0,
    "val_size": 0,
    "batch_size": 128,
    "eval_batch_size": 1000,
    "augment": False,
    "download": False,
    "seed": 0,
    "options": {},
    "ood": [],
}
# every dataset is mnist plus these settings (the values each preset had when it was a full file)
OWN = {
    "mnist": {},
    "fashion_mnist": {"name": "fashion_mnist"},
    "cifar10": {"name": "cifar10", "augment": True},
    "cifar100": {"name": "cifar100", "augment": True},
    "svhn": {"name": "svhn", "augment": True},
    "digits": {"name": "digits", "batch_size": 64},
    "mnist1d": {
        "name": "mnist1d",
        "options": {"num_train": 4000, "num_test": 1000, "shuffle_seq": False, "gen_seed": 42},
        "ood": [
            {"name": "noisy", "seed": 1, "iid_noise_scale": 0.05, "corr_noise_scale": 0.4},
            {"name": "control", "seed": 2, "control": True},
        ],
    },
    "synthetic": {
        "name": "synthetic",
        "options": {
            "kind": "teacher",
            "num_train": 2000,
            "num_test": 1000,
            "dim": 20,
            "num_classes": 4,
            "hidden": 64,
            "spread": 1.0,
        },
    },
}


def test_one_preset_per_dataset_and_one_full_file():
    assert sorted(OWN) == sorted(DATASETS) == sorted(p.stem for p in CONF.glob("*.yaml"))
    assert OmegaConf.to_container(OmegaConf.load(CONF / "mnist.yaml")) == MNIST
    for name in set(OWN) - {"mnist"}:
        raw = OmegaConf.load(CONF / f"{name}.yaml")
        assert raw.defaults[-1] == "_self_" and raw.defaults[0] in OWN, name


@pytest.mark.parametrize("name", sorted(OWN))
def test_preset_composes_to_mnist_plus_its_own(compose_cfg, name):
    cfg = compose_cfg([f"data={name}"])
    composed = OmegaConf.to_container(cfg.data, resolve=False)
    assert composed == {**MNIST, **OWN[name]} and list(composed) == list(MNIST)
    validate(cfg)

"""The pre-check's look at the machine (`pipeline/prechecks.py`): the memory a model needs against the memory where
it would train, the dataset shapes that estimate uses, path lengths, launcher keys and report keys."""

from __future__ import annotations

import pytest

from landscape_sweep.data import load_data
from landscape_sweep.data.datasets import data_shape, train_pool
from landscape_sweep.pipeline import prechecks
from landscape_sweep.pipeline.config import ConfigError, validate

GIB = 2**30


@pytest.mark.parametrize(
    "name,options", [("mnist1d", {}), ("digits", {}), ("synthetic", {"dim": 7, "num_classes": 3, "num_train": 50})]
)
def test_the_shapes_the_estimate_uses_are_those_of_the_loaded_data(name, options, data_dir):
    bundle = load_data(name, data_dir, **options)
    assert data_shape(name, options) == (tuple(bundle.in_shape), bundle.num_classes)
    assert train_pool(name, options) == len(bundle.train[1])  # val_size 0: the whole train split


def test_a_batch_larger_than_the_train_set_is_sized_as_the_whole_set(compose_cfg, monkeypatch):
    """Full-batch training written as a huge data.batch_size is not refused for activations it never holds."""
    monkeypatch.setattr(prechecks, "available_memory", lambda: (1 * GIB, "MemAvailable"))
    monkeypatch.setattr(prechecks, "_gpu_memory", lambda: None)
    full = prechecks.memory_needed(validate(compose_cfg(["data.batch_size=100000000"])))
    assert full == prechecks.memory_needed(validate(compose_cfg(["data.batch_size=4000"])))  # mnist1d: 4000 train
    assert "a batch of 4000" in full[2]
    subset = prechecks.memory_needed(validate(compose_cfg(["data.batch_size=100000000", "data.train_size=500"])))
    assert "a batch of 500" in subset[2]
    cfg = compose_cfg(["data.batch_size=100000000", "trainer.accelerator=cpu"])
    prechecks.check_memory(cfg, validate(cfg), local=True)  # fits in 1 GiB


def test_a_model_too_large_for_this_machine_is_refused_naming_the_estimate(compose_cfg, monkeypatch):
    monkeypatch.setattr(prechecks, "available_memory", lambda: (1 * GIB, "MemAvailable"))
    monkeypatch.setattr(prechecks, "_gpu_memory", lambda: None)
    cfg = compose_cfg(["model.width=4096", "model.depth=8", "trainer.accelerator=cpu"])
    need, weights, how = prechecks.memory_needed(validate(cfg))
    assert 7 * 4096**2 < weights / 4 < 1.01 * 7 * 4096**2  # the hidden layers' weights dominate; 4 bytes each
    assert need >= 5 * weights and "training: 1 x (3 copies" in how and "analysis: 5 copies" in how  # 3 endpoints
    with pytest.raises(ConfigError) as e:
        prechecks.check_memory(cfg, validate(cfg), local=True)
    msg = str(e.value)
    assert msg.startswith("model.depth=8, model.width=4096: this mlp on mnist1d needs at least ") and "\n" not in msg
    assert f"{need / GIB:.3g} GiB" in msg and "1 GiB available (MemAvailable)" in msg
    small = compose_cfg(["model.width=64", "trainer.accelerator=cpu"])
    prechecks.check_memory(small, validate(small), local=True)  # the default cell fits in 1 GiB


def test_the_optimizer_and_parallel_endpoints_multiply_the_estimate(compose_cfg):
    def copies(preset: str) -> int:
        return prechecks.optimizer_copies(validate(compose_cfg([f"optimizer={preset}"]))["optimizer"])

    # besides the weights: gradients, then momentum (SGD) or two moments (Adam), SAM's saved weights, SWA's average
    assert [copies(o) for o in ("sgd", "adam", "sam", "sam_swa")] == [2, 3, 3, 4]
    one = prechecks.memory_needed(validate(compose_cfg(["model.width=2048"])))[0]
    assert (
        prechecks.memory_needed(validate(compose_cfg(["model.width=2048", "endpoints.parallel=processes"])))[0]
        > 1.5 * one
    )


def test_on_a_gpu_the_device_holds_the_training_and_the_host_the_weights(compose_cfg, monkeypatch):
    monkeypatch.setattr(prechecks, "available_memory", lambda: (64 * GIB, "MemAvailable"))
    monkeypatch.setattr(prechecks, "_gpu_memory", lambda: (1 * GIB, "GPU memory of cuda:0"))
    cfg = compose_cfg(["model.width=4096", "model.depth=8"])
    with pytest.raises(ConfigError, match=r"GiB available \(GPU memory of cuda:0\)"):
        prechecks.check_memory(cfg, validate(cfg), local=True)
    cpu = compose_cfg(["model.width=4096", "model.depth=8", "trainer.accelerator=cpu"])
    prechecks.check_memory(cpu, validate(cpu), local=True)  # trained on the CPU: 64 GiB are enough


def test_slurm_cells_are_sized_against_the_memory_they_request(compose_cfg):
    cfg = compose_cfg(["hydra/launcher=slurm", "model.width=4096", "model.depth=8", "hydra.launcher.mem_gb=1"])
    with pytest.raises(ConfigError, match=r"GiB available \(hydra.launcher.mem_gb=1\)"):
        prechecks.check_memory(cfg, validate(cfg), local=False)
    gpu = compose_cfg(["hydra/launcher=slurm_gpu", "trainer=gpu", "model.width=4096", "model.depth=8",
                       "hydra.launcher.mem_gb=1"])  # fmt: skip
    prechecks.check_memory(gpu, validate(gpu), local=False)  # its host holds only the weights (0.5 GiB)


def test_a_job_dir_must_leave_room_for_the_cells_own_files(tmp_path):
    prechecks.check_path("hydra.run.dir", tmp_path / ("x" * 255))
    with pytest.raises(ConfigError, match=r"^hydra.run.dir: the directory name 'x{20}\.\.\.x{12}' has 256 bytes"):
        prechecks.check_path("hydra.run.dir", tmp_path / ("x" * 256) / "0")
    deep = tmp_path.joinpath(*["y" * 200] * 20)  # every name fits, the whole path does not
    with pytest.raises(ConfigError, match=r"exceeds PATH_MAX \(4096\)"):
        prechecks.check_path("hydra.sweep.dir", deep)


def test_the_slurm_launchers_take_detach(compose_cfg):
    prechecks.check_launcher_keys(compose_cfg(["hydra/launcher=slurm", "hydra.launcher.detach=true"]))
    prechecks.check_launcher_keys(compose_cfg(["hydra/launcher=local", "hydra.launcher.cells_per_job=2"]))


def test_report_keys_are_checked_against_every_cell_of_the_sweep(compose_cfg):
    configs = [validate(compose_cfg(["+report.select={optimizer.lr: 0.1}", f"optimizer={o}"])) for o in ("sgd", "sam")]
    prechecks.check_report_keys(configs)  # a config key of the cells (the same in both: one panel)
    sam_only = [validate(compose_cfg(["report.facet=[optimizer.rho]", f"optimizer={o}"])) for o in ("sgd", "sam")]
    prechecks.check_report_keys(sam_only)  # optimizer.rho is null for sgd: still a key of the cells
    bad = [validate(compose_cfg(["report.facet=[optimizer.rhoo]"]))]
    with pytest.raises(ValueError, match=r"^report.facet='optimizer.rhoo': not a cell field \(dataset, arch"):
        prechecks.check_report_keys(bad)

import subprocess
import sys

from tests._support.cli import REPO

CELL = """
import sys, tempfile
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from landscape_sweep import CONF_DIR
from landscape_sweep.pipeline.cell import run_cell
overrides = ['logger=none', 'trainer.max_epochs=1', 'data.train_size=256', 'model.width=8', 'endpoints.seeds=[0,1]',
             'landscape=fast', 'landscape.connectivity.methods=[linear]', 'trainer.enable_progress_bar=false']
with initialize_config_dir(str(CONF_DIR), version_base=None):
    cfg = OmegaConf.to_container(compose('config', overrides=overrides), resolve=False)
d = tempfile.mkdtemp()
cfg['paths'] = {'output_dir': d, 'log_dir': d}
cfg['data']['root'] = d
assert run_cell(cfg, d).status == 'completed'
print(' '.join(m for m in ('wandb', 'pandas') if m in sys.modules))
"""


def test_a_cell_without_wandb_imports_neither_wandb_nor_pandas():
    out = subprocess.run([sys.executable, "-c", CELL], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == []  # W&B only with logger=wandb; pandas only in the report


DEFERRED = """
import sys
import landscape_sweep.pipeline.app, landscape_sweep.pipeline.cell
from landscape_sweep.pipeline import process
import pytorch_lightning.utilities.types as pl_types
import torchmetrics.metric
print(' '.join(m for m in ('torchvision', 'scipy.signal', 'torchmetrics.functional') if m in sys.modules))
assert process.is_deferred('torchmetrics') and pl_types.Metric is torchmetrics.metric.Metric
import torchmetrics
assert torchmetrics.Accuracy.__name__ == 'Accuracy' and not process.is_deferred('torchmetrics')
assert 'torchmetrics.functional' in sys.modules and torchmetrics.Metric is torchmetrics.metric.Metric
"""


def test_the_cli_imports_lightning_without_the_metrics_it_does_not_use():
    """torchmetrics' __init__ (every metric, torchvision, scipy.signal) waits for a use of the package."""
    out = subprocess.run([sys.executable, "-c", DEFERRED], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == []


def _package(root, name: str) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("import sys\nsys.modules[__name__].ran = True\nfrom .sub import value\n")
    (root / name / "sub.py").write_text("value = 2\n")


def test_a_deferred_package_runs_its_init_on_first_use(tmp_path, monkeypatch):
    from landscape_sweep.pipeline.process import DeferInit, is_deferred

    _package(tmp_path, "deferred_pkg_a")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert DeferInit("deferred_pkg_a", lambda m: setattr(m, "early", 1)).install()
    try:
        import deferred_pkg_a

        assert deferred_pkg_a.early == 1 and "ran" not in vars(deferred_pkg_a) and is_deferred("deferred_pkg_a")
        assert not hasattr(deferred_pkg_a, "__wrapped__") and is_deferred("deferred_pkg_a")  # probes: no init
        import deferred_pkg_a.sub  # submodules import without the __init__ (`from pkg import sub` asks pkg first)

        assert deferred_pkg_a.sub.value == 2 and "ran" not in vars(deferred_pkg_a)
        assert deferred_pkg_a.value == 2 and deferred_pkg_a.ran and not is_deferred("deferred_pkg_a")
    finally:
        for name in ("deferred_pkg_a", "deferred_pkg_a.sub"):
            sys.modules.pop(name, None)


def test_a_package_whose_fill_fails_is_imported_as_usual(tmp_path, monkeypatch):
    from landscape_sweep.pipeline.process import DeferInit, is_deferred

    _package(tmp_path, "deferred_pkg_b")
    monkeypatch.syspath_prepend(str(tmp_path))

    def fill(module):
        raise ImportError("another layout")

    assert DeferInit("deferred_pkg_b", fill).install()
    try:
        import deferred_pkg_b

        assert deferred_pkg_b.ran and not is_deferred("deferred_pkg_b")
        assert not DeferInit("deferred_pkg_b").install()  # imported already: nothing to defer
    finally:
        for name in ("deferred_pkg_b", "deferred_pkg_b.sub"):
            sys.modules.pop(name, None)


def test_the_collector_pauses_for_the_imports_and_then_skips_what_they_built(monkeypatch):
    import gc

    from landscape_sweep.pipeline import process

    monkeypatch.setattr(process, "_frozen", {"done": False})
    try:
        process.pause_gc()
        assert not gc.isenabled()
        process.freeze_heap()  # the imports are done
        frozen = gc.get_freeze_count()
        assert gc.isenabled() and frozen > 0
        [object() for _ in range(10)]
        process.pause_gc()  # a later cell: its garbage stays collectable
        process.freeze_heap()
        assert gc.isenabled() and gc.get_freeze_count() == frozen
    finally:
        gc.enable()
        gc.unfreeze()

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

"""landscape_sweep: how depth, width and flatness-seeking optimizers shape the loss landscape."""

from pathlib import Path

__version__ = "0.1.0"

# the Hydra config tree: `conf/` beside the package in a checkout, `landscape_sweep/conf` in an installed wheel
CONF_DIR = next(
    p
    for p in (Path(__file__).resolve().parent / "conf", Path(__file__).resolve().parents[1] / "conf")
    if (p / "config.yaml").is_file()
)

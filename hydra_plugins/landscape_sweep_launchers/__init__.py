"""Hydra launcher plugins of landscape_sweep (Hydra instantiates launchers only from `hydra_plugins`).

`SlurmLauncher` is the `_target_` of the `slurm` / `slurm_gpu` presets; see landscape_sweep/pipeline/launchers.py.
"""

from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _plugin

from landscape_sweep.pipeline.launchers import CollectAll


class SlurmLauncher(CollectAll, _plugin.SlurmLauncher):
    """submitit SLURM arrays that collect every cell, report, then fail naming the cells that died."""


class LocalLauncher(CollectAll, _plugin.LocalLauncher):
    """The same over submitit's local executor."""

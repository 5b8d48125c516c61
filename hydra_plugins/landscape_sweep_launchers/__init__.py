"""landscape_sweep's Hydra launchers: submitit SLURM (and local) arrays that collect every cell of a sweep.

Why here: Hydra discovers and instantiates launchers only from the `hydra_plugins` namespace package, and registers
each under the module that defines it, so the classes named by `conf/hydra/launcher/slurm*.yaml`
(`hydra_plugins.landscape_sweep_launchers.SlurmLauncher`) are defined in this file.

Why a subclass of hydra-submitit-launcher's launchers: its `launch()` waits for the jobs in order and raises at
the first one that produced no result (a process killed by SIGKILL or the OOM killer, a node failure), so the
other cells are never collected and the multirun-end report is never written. These launchers keep the plugin's
job side (restoring Hydra's state in the job, submitit's checkpoint/requeue) and replace only `launch()`: every
job becomes a `JobReturn` — a dead one a failed one whose `CellJobError` names the cell (job number, overrides,
SLURM job id, state, log file) — the report is built through the multirun-end callbacks, and Hydra then raises
the first error so the command exits non-zero naming the cell. Re-running the same command finishes the sweep
(completed cells are skipped).

Requeueing: submitit's checkpoint/requeue (`max_num_timeout`) re-runs the whole cell; before the requeue the running
training writes its unwritten `last.ckpt` (`_pack.before_requeue`), and the cell resumes each endpoint from its
`last.ckpt` and reuses finished endpoints. Lightning's SLURM auto-requeue stays off.

Packing: `cells_per_job` > 1 makes each job run that many consecutive cells one after another in one process
(`_pack.py`); every cell is still its own Hydra job (job dir, `.hydra/`, callbacks, logging) with its own
`JobReturn`, a requeued job skips the cells it finished, and a bad value fails in one line (`LauncherConfigError`).

Detached (`detach=true`, `_detach.py`): the command submits the cells that still need a job and one CPU report job
that runs after them (`afterany`), records both in `<sweep_dir>/sweep.json`, prints how to follow the sweep
(`python -m landscape_sweep.status` / `resubmit`) and exits 0 without waiting.

Waiting: while the array waits, `_pending.py` polls `squeue`; a pending reason that can never resolve
(PartitionConfig, ...) or `pending_timeout_min` with cells pending and none running cancels the array and fails
the command with one line naming the request (`PendingError`). A request sbatch rejects fails the same way.

The private Hydra/submitit APIs this needs are wrapped one per function in `_private.py`, with the versions they
were checked against.
"""

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _plugin

from hydra_plugins.landscape_sweep_launchers._collect import (
    CellJobError,
    CollectAll,
    cell_name,
    collect,
    collect_packed,
)
from hydra_plugins.landscape_sweep_launchers._pack import LauncherConfigError, cells_per_job
from hydra_plugins.landscape_sweep_launchers._pending import PendingError
from hydra_plugins.landscape_sweep_launchers._schema import LandscapeLocalConf, LandscapeSlurmConf

__all__ = [
    "CellJobError",
    "LandscapeLocalConf",
    "LandscapeSlurmConf",
    "LauncherConfigError",
    "LocalLauncher",
    "PendingError",
    "SlurmLauncher",
    "cell_name",
    "cells_per_job",
    "collect",
    "collect_packed",
]


ConfigStore.instance().store(
    group="hydra/launcher", name="landscape_sweep_slurm", node=LandscapeSlurmConf, provider="landscape_sweep"
)
ConfigStore.instance().store(
    group="hydra/launcher", name="landscape_sweep_local", node=LandscapeLocalConf, provider="landscape_sweep"
)


class SlurmLauncher(CollectAll, _plugin.SlurmLauncher):
    """submitit SLURM arrays that collect every cell, report, then fail naming the cells that died."""


class LocalLauncher(CollectAll, _plugin.LocalLauncher):
    """The same over submitit's local executor (processes on this machine)."""

"""The launchers' config schemas: the plugin's own plus our keys, the one list of the launcher options we add.

A launcher option is a field here (with its default; `LandscapeLocalConf` too where the local launcher takes it):
the pre-check (`pipeline/prechecks.check_launcher_keys`) accepts exactly the schema's fields, and `OWN_KEYS`, the
keys never handed to submitit, is derived from the fields the plugin's schema lacks.
"""

from dataclasses import dataclass, field, fields
from typing import Any

from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf


@dataclass
class LandscapeSlurmConf(SlurmQueueConf):
    """The plugin's SLURM schema plus our keys; the base of conf/hydra/launcher/slurm*.yaml."""

    _target_: str = "hydra_plugins.landscape_sweep_launchers.SlurmLauncher"
    # minutes the array may spend with cells pending and none running before it is cancelled; None: unbounded
    pending_timeout_min: float | None = None
    # consecutive cells each job runs in one process; typed Any so that a bad value reaches `cells_per_job()`
    # and fails in one line naming the key (OmegaConf's int conversion error names neither key nor range)
    cells_per_job: Any = 1
    # submit the array and a report job after it, write <sweep_dir>/sweep.json, print how to follow, exit 0
    detach: bool = False
    # the detached sweep's report job (CPU only; partition null: the array's)
    report_job: dict[str, Any] = field(
        default_factory=lambda: {"cpus_per_task": 2, "mem_gb": 4, "timeout_min": 60, "partition": None}
    )


@dataclass
class LandscapeLocalConf(LocalQueueConf):
    """The plugin's local schema plus `cells_per_job`; the base of conf/hydra/launcher/local.yaml."""

    _target_: str = "hydra_plugins.landscape_sweep_launchers.LocalLauncher"
    cells_per_job: Any = 1  # as in LandscapeSlurmConf


# launcher keys of our own schema (LandscapeSlurmConf), never handed to submitit
OWN_KEYS = tuple(f.name for f in fields(LandscapeSlurmConf) if f.name not in {g.name for g in fields(SlurmQueueConf)})

"""Helpers shared by test modules: import them from here, never from another test module or a conftest.

cli: the repo root, fast overrides, the CLI's environment, the CLI in this process and checks of a finished cell.
gate: stop a CLI process of a test at a chosen epoch, so the test acts on a known state.
hessian: tiny float64 models, data and references for the HVP, Hessian and sharpness tests.
slurm: the localhost SLURM cluster (start/stop), its CLI environment, job fields and a requeue.
sweep: a synthetic sweep of results.json files with known relations, for the report tests.
wandb_offline: read back what reached an offline W&B run.
"""

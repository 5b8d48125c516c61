"""Training layer: the LightningModule, optimizers (SAM/ASAM), SWA wiring, Lightning callbacks."""

from landscape_sweep.training.module import LitClassifier
from landscape_sweep.training.optim import (
    build_optimizer,
    build_scheduler,
    optimizer_label,
    validate_optimizer_cfg,
)
from landscape_sweep.training.sam import SAM, frozen_bn_stats
from landscape_sweep.training.swa import SWA

__all__ = [
    "SAM",
    "SWA",
    "LitClassifier",
    "build_optimizer",
    "build_scheduler",
    "frozen_bn_stats",
    "optimizer_label",
    "validate_optimizer_cfg",
]

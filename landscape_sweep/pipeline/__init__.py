"""One cell = one Hydra job (see docs/architecture.md). Importing the package defers torchmetrics' full import
before any pipeline module imports pytorch_lightning (`process.defer_torchmetrics`)."""

from landscape_sweep.pipeline.process import defer_torchmetrics

defer_torchmetrics()

#!/usr/bin/env bash
# CIFAR-10 WideResNet-16-k width sweep with alignment-based barriers on SLURM GPUs
# (conf/experiment/cifar10_wrn_width_slurm.yaml): does the barrier after weight matching vanish as k grows?
# 5 cells (k = 1,2,4,8,16), 3 endpoints each (3 pairs), linear and linear_aligned paths, one GPU per cell.
# Cost (estimate, not measured): ~1 (k=1) to ~15 (k=16) GPU-hours per cell, ~30 GPU-hours in all.
set -euo pipefail
python -m landscape_sweep -m experiment=cifar10_wrn_width_slurm "$@"

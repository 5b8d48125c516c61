#!/usr/bin/env bash
# CIFAR-10 ResNet depth x width x {sgd, sam, swa} on SLURM GPUs (conf/experiment/cifar10_resnet_slurm.yaml):
# how do depth, width and flat-minimum optimizers change barriers, sharpness and the generalization gap?
# 27 cells, one GPU each (hydra/launcher=slurm_gpu); partition/account/qos/setup from conf/local/slurm_gpu.yaml
# or the command line, e.g.  ./cifar10_resnet_slurm.sh hydra.launcher.partition=gpu hydra.launcher.account=lab
# Cost (estimate, not measured): 1-4 GPU-hours per cell, ~60 GPU-hours in all. Run from the login node; the sweep
# report is written there when the array ends. Upload W&B later with `wandb sync <sweep_dir>/*/wandb/offline-run-*`.
set -euo pipefail
python -m landscape_sweep -m experiment=cifar10_resnet_slurm "$@"

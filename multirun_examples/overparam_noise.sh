#!/usr/bin/env bash
# Over-parameterization under label noise (conf/experiment/overparam_noise.yaml): MLP width 8..512 on mnist1d with
# clean vs 20 % noisy labels and 1000 vs 4000 training samples; where do barriers, sharpness and test accuracy turn?
# 16 cells, 2 endpoints, 60 epochs, landscape=fast. Locally by default; on SLURM CPUs: ./overparam_noise.sh hydra/launcher=slurm
# Cost: ~5-30 s per cell on one CPU core, ~5 min in all.
set -euo pipefail
python -m landscape_sweep -m experiment=overparam_noise "$@"

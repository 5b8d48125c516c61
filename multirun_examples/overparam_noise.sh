#!/usr/bin/env bash
# Over-parameterization under label noise (conf/experiment/overparam_noise.yaml): MLP width 8..512 on mnist1d with
# clean vs 20 % noisy labels and 1000 vs 4000 training samples; where do barriers, sharpness and test accuracy turn?
# 16 cells, 3 endpoints (3 pairs), 60 epochs, landscape=fast. Locally: ./overparam_noise.sh; on SLURM CPUs:
# ./overparam_noise.sh hydra/launcher=slurm.
# Cost: ~20-90 s per cell on one CPU core, ~15 min in all (estimated from the measured mini-study: 3 endpoints and
# converged curves cost ~1.6x the 2-endpoint analysis).
set -euo pipefail
python -m landscape_sweep -m experiment=overparam_noise "$@"

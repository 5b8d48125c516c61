#!/usr/bin/env bash
# CPU mini-study on mnist1d: how do MLP depth and width, and SAM vs SGD, shape barriers and sharpness?
# 18 cells (depth 1,2,4 x width 16,64,256 x sgd,sam; conf/experiment/mini_study.yaml), 3 endpoints, 30 epochs,
# landscape=fast, one cell after another in this process.
# Cost: ~8-50 s per cell on 2 CPU cores, 6.2 min in all (measured). Ends with <sweep_dir>/report.md, sweep_results.csv, figures/.
set -euo pipefail
python -m landscape_sweep -m experiment=mini_study "$@"

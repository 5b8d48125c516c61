#!/usr/bin/env bash
# CPU mini-study on mnist1d: how do MLP depth and width, and SAM vs SGD, shape barriers and sharpness?
# 18 cells (depth 2,3,4 x width 64,128,256 x sgd,sam; conf/experiment/mini_study.yaml), 3 endpoints each trained to
# train loss <= 0.1 (at most 60 epochs), landscape=fast (Bezier capped at 60 epochs: upper bounds), a joblib worker per core.
# Cost: 210-216 s on 2 CPU cores, 355-389 CPU seconds (measured, 2 runs). Ends with <sweep_dir>/report.md, sweep_results.csv, figures/.
set -euo pipefail
python -m landscape_sweep -m experiment=mini_study "$@"

#!/usr/bin/env bash
# A known result that needs width: the barrier after weight matching falls with width (conf/experiment/width_mnist1d.yaml).
# 4 cells (MLP depth 2 x width 128, 256, 512, 1024, SGD), 3 endpoints each trained to train loss <= 0.05, linear,
# aligned and REPAIR paths; the report fits each barrier's exponent along width with its 95 % interval.
# Cost: 346 CPU seconds, about 5 min on 2 idle cores (measured). Ends with <sweep_dir>/report.md, trends.csv, figures/.
set -euo pipefail
python -m landscape_sweep -m experiment=width_mnist1d "$@"

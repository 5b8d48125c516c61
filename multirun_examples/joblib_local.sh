#!/usr/bin/env bash
# Joblib-parallel local sweep on mnist1d: which optimizer (SGD, SAM, ASAM, SWA, SAM+SWA) finds flatter, better
# connected minima, at a narrow and a wide MLP? Cells run in N_JOBS parallel worker processes of this machine.
# 10 cells (width 32,128 x 5 optimizers), 3 endpoints (3 pairs), 30 epochs, landscape=fast; one thread per worker.
# Cost: ~20-40 s per cell on one core (mini-study-sized cells); ~3 min with N_JOBS=2.
set -euo pipefail
N_JOBS=${N_JOBS:-2}
export OMP_NUM_THREADS=1  # one torch thread per worker process: N_JOBS cells use N_JOBS cores
python -m landscape_sweep -m hydra/launcher=joblib hydra.launcher.n_jobs="$N_JOBS" \
  landscape=fast trainer.max_epochs=30 trainer.enable_progress_bar=false \
  model.width=32,128 optimizer=sgd,sam,asam,swa,sam_swa "$@"

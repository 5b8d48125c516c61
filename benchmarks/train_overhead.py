"""Training overhead of the framework: the default cell's training (Lightning, LitClassifier, TensorLoader) vs a
hand-written PyTorch loop doing the same epochs on the same data in the same process. Prints the ratio
(target <= 1.3x).

    python benchmarks/train_overhead.py [--epochs 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from landscape_sweep.data import TensorLoader, load_data
from landscape_sweep.models import build_model
from landscape_sweep.pipeline.config import CONF_DIR
from landscape_sweep.training.module import LitClassifier
from landscape_sweep.training.optim import build_optimizer, build_scheduler

# the sgd preset exactly as a cell uses it
OPT = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "optimizer" / "sgd.yaml"), resolve=True)


def lightning_run(data, epochs: int) -> float:
    torch.manual_seed(0)
    model = build_model("mlp", data.in_shape, data.num_classes, 2, 64, norm="none")
    loader = TensorLoader(*data.train, batch_size=128, shuffle=True, seed=0)
    module = LitClassifier(model, OPT, max_epochs=epochs, steps_per_epoch=len(loader))
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        default_root_dir=tempfile.mkdtemp(),
        limit_val_batches=0,
    )
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - t0


def plain_run(data, epochs: int) -> float:
    torch.manual_seed(0)
    model = build_model("mlp", data.in_shape, data.num_classes, 2, 64, norm="none")
    loader = TensorLoader(*data.train, batch_size=128, shuffle=True, seed=0)
    opt = build_optimizer(model.parameters(), OPT)
    sched = build_scheduler(opt, OPT, max_epochs=epochs, steps_per_epoch=len(loader))
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            (model(x).argmax(-1) == y).float().mean()  # the module also computes accuracy per step
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    data = load_data("mnist1d", tempfile.gettempdir() + "/landscape_sweep_bench_data")
    plain_run(data, 1), lightning_run(data, 1)  # warm-up
    lit = min(lightning_run(data, args.epochs) for _ in range(args.repeats))
    ref = min(plain_run(data, args.epochs) for _ in range(args.repeats))
    print(f"{'run':<28}{'seconds':>10}{'ratio':>8}")
    print(f"{'hand-written loop':<28}{ref:>10.3f}{1.0:>8.2f}")
    print(f"{'Lightning (LitClassifier)':<28}{lit:>10.3f}{lit / ref:>8.2f}")


if __name__ == "__main__":
    main()

"""A synthetic sweep with known relations, for the report tests: depth {1,2} x width {16,64} x optimizer
{sgd,sam} completed cells, plus one failed, one diverged (optimizer.lr=10) and one job dir without results.json;
every job has the Hydra overrides that define it (`.hydra/overrides.yaml`, `trainer.max_epochs=30` shared by all).
`add_invalid` adds three jobs whose results.json this version cannot read.

gen_gap = 0.10 + 0.04*d + 0.02*w + 0.01*o (d, w, o: 0/1 indices), so the gap ranks the cells 000 < 001 < ... < 111.
hessian_top_eig = X below: overall tau 0.5 (7 of 28 pairs discordant), psi depth 0.5, width 0.5, optimizer 1.
linear/loss_barrier = 10*gap (tau 1); linear_aligned/loss_barrier = 0.05 everywhere (constant: n/a).
"""

from __future__ import annotations

import json
from pathlib import Path

DEPTHS, WIDTHS, OPTS = (1, 2), (16, 64), ("sgd", "sam")
X = {(0, 0, 0): 1, (1, 0, 0): 5, (0, 1, 0): 2, (1, 1, 0): 0, (0, 0, 1): 3, (1, 0, 1): 6, (0, 1, 1): 4, (1, 1, 1): 7}
OFFSETS = (0.01, 0.0, -0.01)  # per-endpoint gap offsets: mean 0, population std 0.01*sqrt(2/3)
PAIRS = ((0, 1), (0, 2), (1, 2))
T = [0.0, 0.25, 0.5, 0.75, 1.0]


def gap(di: int, wi: int, oi: int) -> float:
    return 0.10 + 0.04 * di + 0.02 * wi + 0.01 * oi


def num_params(depth: int, width: int) -> int:
    return 40 * width + (depth - 1) * width * width + 10 * width


def cell(depth: int, width: int, opt: str, params: int | None) -> dict:
    return {
        "dataset": "mnist1d",
        "arch": "mlp",
        "depth": depth,
        "width": width,
        "norm": "none",
        "optimizer": opt,
        "num_params": params,
        "train_size": 4000,
        "label_noise": 0.0,
        "seeds": [0, 1, 2],
    }


def endpoint(k: int, g: float, x: float) -> dict:
    train_acc = 1.0 - 0.01 * k
    return {
        "seed": k,
        "checkpoint": f"checkpoints/seed{k}/last.ckpt",
        "train_loss": 0.05,
        "train_acc": train_acc,
        "test_loss": 0.3,
        "test_acc": train_acc - g - OFFSETS[k],
        "sharpness": {
            "hessian_top_eigs": [x + 0.5 * (k - 1), x - 1],
            "hessian_trace": 100.0 + x,
            "hessian_trace_stderr": 1.0,
            "worst_case": [0.2, None, 0.4][k],
            "average_case": None,
        },
        "trajectory": [],
    }


def path_entry(pair: tuple[int, int], method: str, barrier: float) -> dict:
    train = [0.05 + barrier * (1 - abs(2 * t - 1)) for t in T]
    return {
        "pair": list(pair),
        "method": method,
        "t": T,
        "train_loss": train,
        "train_acc": [0.99] * len(T),
        "test_loss": [v + 0.25 for v in train],
        "test_acc": [0.8] * len(T),
        "loss_barrier": barrier,
        "error_barrier": None,
        "test_loss_barrier": barrier,
        "test_error_barrier": None,
        "path_length": 3.0 + pair[0],
        "endpoint_distance": 3.0,
        "path_curvature": 0.0,
    }


def completed(depth: int, width: int, opt: str, connectivity: bool = True) -> dict:
    di, wi, oi = DEPTHS.index(depth), WIDTHS.index(width), OPTS.index(opt)
    g, x = gap(di, wi, oi), X[(di, wi, oi)]
    conn = []
    if connectivity:
        for j, pair in enumerate(PAIRS):
            conn.append(path_entry(pair, "linear", 10 * g + 0.1 * (j - 1)))
            conn.append(path_entry(pair, "linear_aligned", 0.05))
    return {
        "schema": 1,
        "status": "completed",
        "error": None,
        "config_hash": f"h{di}{wi}{oi}",
        "config": {"logger": {"wandb": {"project": "fake_proj"}}},
        "cell": cell(depth, width, opt, num_params(depth, width)),
        "endpoints": [endpoint(k, g, x) for k in range(3)],
        "connectivity": conn,
        "timing_s": {"train": 1.0, "analysis": 2.0, "total": 3.0},
        "versions": {},
    }


SHARED = "trainer.max_epochs=30"
# job -> (results.json text, the reason the report gives); added by add_invalid
INVALID = {
    "11": (  # a completed record cut off after 400 characters (a crash mid-write without the atomic rename)
        json.dumps(completed(1, 16, "sgd"), indent=2)[:400],
        "not valid JSON: Expecting value at line 23 column 15",
    ),
    "12": (
        json.dumps({"schema": 99, "status": "completed"}),
        "schema=99: unknown results schema; this version reads 1 and 2",
    ),
    "13": (
        json.dumps({"schema": 2, "status": "completed", "endpoints": "x", "connectivity": []}),
        'endpoints: must be a list, got str "x"',
    ),
}


def overrides(job: Path, *items: str) -> None:
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in (*items, SHARED)))


def write(job: Path, obj: dict | str, *over: str) -> None:
    job.mkdir(parents=True)
    overrides(job, *over)
    (job / "results.json").write_text(obj if isinstance(obj, str) else json.dumps(obj))


def make_sweep(root: Path, connectivity: bool = True) -> Path:
    job = 0
    for opt in OPTS:
        for depth in DEPTHS:
            for width in WIDTHS:
                over = (f"model.depth={depth}", f"model.width={width}", f"optimizer={opt}")
                write(root / str(job), completed(depth, width, opt, connectivity), *over)
                job += 1
    failed = {"schema": 1, "status": "failed", "error": "RuntimeError: out of memory", "cell": cell(4, 16, "sgd", None)}
    over = ("model.depth=4", "model.width=16", "optimizer=sgd")
    write(root / "8", {**failed, "endpoints": [], "connectivity": []}, *over)
    diverged = {"schema": 1, "status": "diverged", "error": "non-finite training loss at epoch 3 (seed 0)"}
    ep = {"seed": 0, "train_loss": None, "train_acc": 0.1, "test_loss": None, "test_acc": 0.1, "sharpness": {}}
    write(
        root / "9",
        {**diverged, "cell": cell(4, 64, "sam", 9999), "endpoints": [ep], "connectivity": []},
        "model.depth=4", "model.width=64", "optimizer=sam", "optimizer.lr=10",
    )  # fmt: skip
    overrides(root / "10", "model.depth=8", "optimizer=sgd")
    return root


def add_invalid(root: Path) -> Path:
    """Jobs 11 (truncated JSON), 12 (schema 99) and 13 (`endpoints` a string) of `INVALID`."""
    for job, (text, _) in INVALID.items():
        write(root / job, text, f"seed={job}")
    return root

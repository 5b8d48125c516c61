"""Warnings about the quality of a sweep's numbers, for report.md: what a reviewer would ask about first.

- fitted curves that hit their epoch cap before the convergence rule was met (their barrier is an upper bound), and
  curves whose train loss along t stays well above their endpoints' (`fit.high_loss`: no low-loss path found);
- Hessian eigenvalues whose Lanczos iteration did not converge (per-block ones too, at endpoints and along paths);
- a probe subset (`landscape.analysis_size`) too small for stable curvature estimates;
- endpoints that never reached the `trainer.stop_at` criterion (not comparable with the others: `unreached_jobs`,
  left out of the trends, τ and the paired comparison unless `report.unreached=include`);
- compared cells whose endpoints end at very different train losses (`train_loss_spread`);
- cells with a single endpoint or endpoint pair (no spread).
Each kind is one line listing the jobs concerned.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pandas as pd

from landscape_sweep.results import CellResult

MIN_ANALYSIS_SIZE = 1000  # PyHessian users saw the top eigenvalue vary 10x between 128-sample runs
MAX_TRAIN_LOSS_RATIO = 2.0  # compared cells whose mean endpoint train losses differ more than this: said in one line


def _jobs(jobs: list[str]) -> str:
    shown = ", ".join(f"`{j}`" for j in jobs[:20])
    return shown + (f" and {len(jobs) - 20} more" if len(jobs) > 20 else "")


def _block_unconverged(r: CellResult) -> bool:
    """Whether some block's top eigenvalue (`landscape.sharpness.per_block`) did not converge, at an endpoint or
    along a path."""
    at_ends = (b.get("top_eig_converged") is False for e in r.endpoints for b in e.sharpness.get("blocks") or [])
    along = (
        False in b.get("top_eig_converged", [])
        for p in r.connectivity
        for b in ((p.sharpness_along_path or {}).get("blocks") or {}).values()
    )
    return any(at_ends) or any(along)


def unreached_jobs(results: list[CellResult]) -> list[str]:
    """Completed cells with an endpoint that never reached its `trainer.stop_at` criterion (`stop.reached` false)."""
    return [str(r.job) for r in results if r.status == "completed"
            and any(e.stop is not None and not e.stop.get("reached") for e in r.endpoints)]  # fmt: skip


def _criterion(stop: dict) -> str:
    """`train_loss ≤ 0.01` / `train_acc ≥ 0.99` (or both) of a `stop` record."""
    c = stop.get("criterion") or {}
    parts = [f"{k} {'≥' if k.endswith('acc') else '≤'} {v:g}" for k, v in c.items() if isinstance(v, (int, float))]
    return " or ".join(parts) or "the criterion"


def unreached_details(results: list[CellResult]) -> dict[str, str]:
    """{job: `1 of 3 endpoints reached train_loss ≤ 0.01 (max 30 epochs)`} of the cells of `unreached_jobs`."""
    out = {}
    for r in results:
        if str(r.job) not in unreached_jobs([r]):
            continue
        stops = [e.stop for e in r.endpoints if e.stop is not None]
        epochs = [e.epochs for e in r.endpoints if isinstance(e.epochs, int)]
        reached = sum(bool(s.get("reached")) for s in stops)
        cap = f" ({max(epochs)} epochs)" if epochs else ""
        out[str(r.job)] = f"{reached} of {len(r.endpoints)} endpoints reached {_criterion(stops[0])}{cap}"
    return out


def _curve_counts(r: CellResult, flagged) -> str:
    """`job (bezier: 2, polychain: 1)`: the cell's fitted curves for which `flagged(fit)` holds, per method; ''."""
    counts = Counter(p.method for p in r.connectivity if p.fit is not None and flagged(p.fit))
    return f"{r.job} ({', '.join(f'{m}: {k}' for m, k in counts.items())})" if counts else ""


def quality_warnings(results: list[CellResult], unreached_included: bool = False) -> list[str]:
    """One line per kind of problem found among the completed cells (empty when none). `unreached_included`:
    whether cells that never reached `trainer.stop_at` are in the trends (`report.unreached=include`)."""
    found: dict[str, list[str]] = defaultdict(list)
    sizes: set[int] = set()
    for r in (r for r in results if r.status == "completed"):
        job = str(r.job)
        if text := _curve_counts(r, lambda fit: not fit.get("converged")):
            found["curves"].append(text)
        if text := _curve_counts(r, lambda fit: fit.get("high_loss") is True):
            found["high_loss"].append(text)
        if any(e.sharpness.get("hessian_top_eigs_converged") is False for e in r.endpoints):
            found["lanczos"].append(job)
        if _block_unconverged(r):
            found["block_lanczos"].append(job)
        for e in r.endpoints:
            if e.sharpness.get("analysis_size") is not None:
                sizes.add(int(e.sharpness["analysis_size"]))
        if any(e.stop is not None and not e.stop.get("reached") for e in r.endpoints):
            found["stop"].append(job)
        if len(r.endpoints) == 1 or (r.connectivity and len({tuple(p.pair) for p in r.connectivity}) == 1):
            found["n1"].append(job)
    out = []
    if found["curves"]:
        out.append(
            f"Fitted curves stopped at their epoch cap before converging in {_jobs(found['curves'])} (method: number "
            "of curves): their barriers are upper bounds; raise `landscape.connectivity.curve.max_epochs`."
        )
    if found["high_loss"]:
        out.append(
            f"Fitted curves whose train loss along t stays well above their endpoints' in {_jobs(found['high_loss'])} "
            "(method: number of curves): the fit found no low-loss path, so their barriers say nothing about "
            "connectivity."
        )
    if found["lanczos"]:
        out.append(f"Lanczos did not converge for a top Hessian eigenvalue in {_jobs(found['lanczos'])}; "
                   "raise `landscape.sharpness.max_iter` (residuals are in results.json).")  # fmt: skip
    if found["block_lanczos"]:
        out.append(f"Lanczos did not converge for a block's top eigenvalue (per-block curvature) in "
                   f"{_jobs(found['block_lanczos'])}; raise `landscape.sharpness.max_iter`.")  # fmt: skip
    small = sorted(s for s in sizes if s < MIN_ANALYSIS_SIZE)
    if small:
        out.append(
            f"Curvature and sharpness were estimated on {', '.join(map(str, small))} training samples "
            f"(< {MIN_ANALYSIS_SIZE}): top-eigenvalue estimates can vary several-fold between subsets of this size; "
            "raise `landscape.analysis_size` for numbers to publish."
        )
    if found["stop"]:
        where = (
            "included in them (`report.unreached=include`)"
            if unreached_included
            else "left out of the trends, τ and the paired comparison (`report.unreached=include` puts them back)"
        )
        out.append(f"Endpoints in {_jobs(found['stop'])} never reached the `trainer.stop_at` criterion within "
                   f"`trainer.max_epochs`: they are not comparable with endpoints that did; {where}.")  # fmt: skip
    if found["n1"]:
        out.append(f"n = 1 (one endpoint or one endpoint pair: no spread) in {_jobs(found['n1'])}.")
    return out


def _cell_name(r: pd.Series) -> str:
    """`job` (depth 2, width 64, sgd)."""
    fields = [f"{k} {r[k]:g}" if isinstance(r.get(k), float) else f"{k} {r.get(k)}" for k in ("depth", "width")
              if pd.notna(r.get(k))]  # fmt: skip
    return f"`{r['job']}` ({', '.join([*fields, str(r.get('optimizer'))])})"


def train_loss_spread(table: pd.DataFrame, ratio: float = MAX_TRAIN_LOSS_RATIO) -> str | None:
    """One line when the compared (completed) cells' mean endpoint train losses differ by more than `ratio`x:
    the range and the cells at either end. Cells compared at very different losses partly compare how far
    training went (sharpness, barriers and the gap all move with it). None when they agree or there is no loss."""
    done = table[table["status"] == "completed"] if "train_loss_mean" in table else table.iloc[:0]
    done = done[pd.to_numeric(done.get("train_loss_mean"), errors="coerce").notna()]
    if len(done) < 2:
        return None
    loss = done["train_loss_mean"].astype(float)
    lo, hi = done.loc[loss.idxmin()], done.loc[loss.idxmax()]
    low, high = float(lo["train_loss_mean"]), float(hi["train_loss_mean"])
    if not (high > ratio * low):
        return None
    times = f"{high / low:.0f}x" if low > 0 else "unbounded ratio"
    return (
        f"The compared cells end at very different train losses: mean endpoint train loss from {low:.3g} in "
        f"{_cell_name(lo)} to {high:.3g} in {_cell_name(hi)} ({times}); measures that move with training progress "
        "(sharpness, barriers, the generalization gap) partly compare how far training went. `trainer.stop_at."
        "train_loss` stops every cell at one loss."
    )

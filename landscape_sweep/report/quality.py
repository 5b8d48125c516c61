"""Warnings about the quality of a sweep's numbers, for report.md: what a reviewer would ask about first.

- fitted curves that hit their epoch cap before the convergence rule was met (their barrier is an upper bound);
- Hessian eigenvalues whose Lanczos iteration did not converge (per-block ones too, at endpoints and along paths);
- a probe subset (`landscape.analysis_size`) too small for stable curvature estimates;
- endpoints that never reached the `trainer.stop_at` criterion (not comparable with the others);
- cells with a single endpoint or endpoint pair (no spread).
Each kind is one line listing the jobs concerned.
"""

from __future__ import annotations

from collections import defaultdict

from landscape_sweep.results import CellResult

MIN_ANALYSIS_SIZE = 1000  # PyHessian users saw the top eigenvalue vary 10x between 128-sample runs


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


def quality_warnings(results: list[CellResult]) -> list[str]:
    """One line per kind of problem found among the completed cells (empty when none)."""
    found: dict[str, list[str]] = defaultdict(list)
    sizes: set[int] = set()
    for r in (r for r in results if r.status == "completed"):
        job = str(r.job)
        unconverged = [p for p in r.connectivity if p.fit is not None and not p.fit.get("converged")]
        if unconverged:
            found["curves"].append(f"{job} ({len(unconverged)})")
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
            f"Fitted curves stopped at their epoch cap before converging in {_jobs(found['curves'])} (number of "
            "curves): their barriers are upper bounds; raise `landscape.connectivity.curve.max_epochs`."
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
        out.append(f"Endpoints in {_jobs(found['stop'])} never reached the `trainer.stop_at` criterion within "
                   "`trainer.max_epochs`: they are not comparable with endpoints that did.")  # fmt: skip
    if found["n1"]:
        out.append(f"n = 1 (one endpoint or one endpoint pair: no spread) in {_jobs(found['n1'])}.")
    return out

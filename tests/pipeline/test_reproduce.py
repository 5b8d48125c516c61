"""A reduced `experiment=reproduce_mnist1d` through the CLI (its `main`, in this process): the tool's measurements
reproduce known results.

Reduced: width 128 only, 2 endpoints (one pair), 40 epochs, a 1000-sample probe subset, fewer probes. What it
asserts is what the literature reports (see conf/experiment/reproduce_mnist1d.yaml):
- Bezier curves nearly remove the linear barrier (Garipov et al. 2018): <= 25 % of it in every cell;
- weight matching lowers the linear barrier in every cell (Ainsworth et al. 2023);
- SAM's endpoints have a lower top Hessian eigenvalue than SGD's (Foret et al. 2021);
- the MLP's test accuracy is near MNIST-1D's 68 % (Greydanus 2020); at 40 epochs we accept 60-76 %.
"""

from __future__ import annotations

import pytest

from landscape_sweep.results import cell_stats, read_results

pytestmark = pytest.mark.slow


def test_reproduce_mnist1d_reduced(run_main, tmp_path):
    sweep = tmp_path / "sweep"
    run_main(
        [
            "-m",
            "experiment=reproduce_mnist1d",
            "model.width=128",
            "trainer.max_epochs=40",
            "endpoints.seeds=[0,1]",
            "landscape.checkpoint_epochs=[20]",
            "landscape.analysis_size=1000",
            "landscape.sharpness.trace_probes=10",
            "landscape.sharpness.kinds=[average]",
            "landscape.connectivity.sharpness_points=[]",
            "logger=none",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    stats = {}
    for job in (sweep / "0", sweep / "1"):
        r = read_results(job)
        assert r.status == "completed", r.error
        s = cell_stats(r)
        stats[r.cell["optimizer"]] = s
        linear, aligned, bezier = (s[f"{m}/loss_barrier"].mean for m in ("linear", "linear_aligned", "bezier"))
        assert bezier <= 0.25 * linear, (r.cell, linear, bezier)
        assert aligned < linear, (r.cell, linear, aligned)
        assert all(p.fit["converged"] for p in r.connectivity if p.method == "bezier")
        assert 0.60 <= s["test_acc"].mean <= 0.76, s["test_acc"]
        assert s["train_acc"].mean > 0.95
        for e in r.endpoints:  # antithetic average-case sharpness is signal, not noise
            assert e.sharpness["average_case"] > 2 * e.sharpness["average_case_stderr"]
    assert stats["sam"]["hessian_top_eig"].mean < stats["sgd"]["hessian_top_eig"].mean
    assert (sweep / "report.md").is_file() and (sweep / "sweep_results.csv").is_file()

"""Loss-surface figures: stored grids read the right way round, models and curves where they are, pages and rows
bounded, cells without surfaces skipped; one real `landscape=thorough` cell drawn end to end."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from landscape_sweep.report.surfaces import (
    cell_figure,
    cell_panels,
    cell_surfaces,
    grid_pages,
    grid_panel,
    page_figure,
    surfaces_grid,
)
from landscape_sweep.results import CellResult

A, B, BEND = (0.0, 0.0), (4.0, 0.0), (2.0, 2.0)


def stored(x: np.ndarray, y: np.ndarray, f) -> dict:
    """A surface as the pipeline stores it: `loss[i][j]` at `(x[i], y[j])`."""
    return {"x": x.tolist(), "y": y.tolist(), "loss": [[f(a, b) for b in y] for a in x]}


def bowl(n: int = 9) -> dict:
    """A quadratic bowl around the endpoint (the origin), steeper along y."""
    g = np.linspace(-1.0, 1.0, n)
    return stored(g, g, lambda a, b: 0.1 + a**2 + 3 * b**2)


def plane(nx: int = 11, ny: int = 7) -> dict:
    """The plane of endpoints A, B and bend BEND, low along the quadratic Bezier's height 1 - (x - 2)^2 / 4."""
    x, y = np.linspace(-0.8, 4.8, nx), np.linspace(-0.4, 2.4, ny)
    return {**stored(x, y, lambda a, b: 0.05 + (b - (1 - (a - 2) ** 2 / 4)) ** 2), "models_xy": [A, B, BEND]}


def result(
    opt="sgd", depth=1, width=16, job="0", surfaces=True, status="completed", num_bends=1, seeds=2, plane_n=(11, 7)
):
    """A cell with a bowl around each endpoint and a plane for each fitted curve (`surfaces=False`: none)."""
    endpoints = [{"seed": s, "loss_surface": bowl() if surfaces else None} for s in range(seeds)]
    conn = [
        {"pair": [0, 1], "method": m, "plane_surface": plane(*plane_n) if surfaces and m != "linear" else None}
        for m in ("linear", "bezier", "polychain")
    ]
    r = CellResult.from_dict(
        {
            "status": status,
            "cell": {"optimizer": opt, "depth": depth, "width": width} if opt else {},
            "config": {"landscape": {"connectivity": {"curve": {"num_bends": num_bends}}}},
            "endpoints": endpoints,
            "connectivity": conn,
        }
    )
    r.job = job  # set by the report's reader
    return r


def test_bowl_minimum_is_the_marked_origin():
    panels = cell_panels(result())
    assert [p.title for p in panels] == [
        "around endpoint 0 (seed 0)",
        "around endpoint 1 (seed 1)",
        "bezier plane, pair 0–1",
        "polychain plane, pair 0–1",
    ]
    p = panels[0]
    iy, ix = np.unravel_index(np.argmin(p.loss), p.loss.shape)
    assert (p.x[ix], p.y[iy]) == (0.0, 0.0) and p.points == [("endpoint", 0.0, 0.0)]
    assert p.loss[iy, -1] == pytest.approx(0.1 + 1) and p.loss[-1, ix] == pytest.approx(0.1 + 3)  # loss[y, x]


def test_plane_models_and_curves():
    bezier, polychain = cell_panels(result())[2:]
    assert bezier.loss.shape == (7, 11)  # rows: y
    assert [xy for _, *xy in bezier.points] == [list(A), list(B), list(BEND)]
    assert [k for k, *_ in bezier.points] == ["endpoint", "endpoint", "bend"]
    c = bezier.curve
    assert c[0] == pytest.approx(A) and c[-1] == pytest.approx(B) and c[50] == pytest.approx((2.0, 1.0))
    fine = cell_panels(result(plane_n=(41, 29)))[2]
    valley = RegularGridInterpolator((fine.y, fine.x), fine.loss)(fine.curve[:, ::-1])
    assert (
        valley.max() < 0.06 < np.median(fine.loss)
    )  # the curve runs along the valley: coordinates and orientation agree
    assert polychain.curve.tolist() == [list(A), list(BEND), list(B)]
    assert bezier.segment.tolist() == [list(A), list(B)]
    two_bends = cell_panels(result(num_bends=2))[2:]
    assert [p.curve for p in two_bends] == [None, None] and len(two_bends[0].points) == 3  # not in the plane


def test_cell_figure(tmp_path):
    r = result(seeds=3)
    r.connectivity += [
        type(p).from_dict({**p.to_dict(), "pair": pair}) for pair in ([0, 2], [1, 2]) for p in r.connectivity[1:3]
    ]
    panels = cell_panels(r)
    assert len(panels) == 3 + 6
    fig = cell_figure(panels, "t")
    axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(axes) == 9
    lefts = {round(ax.get_position().x0, 6) for ax in axes}
    assert len(lefts) == 4 and len({round(ax.get_position().y0, 6) for ax in axes}) == 3  # wraps at 4 a row
    cbar = [ax for ax in fig.axes if not ax.get_images()]
    assert [ax.get_ylabel() for ax in cbar] == ["train loss (log scale)"]
    out = cell_surfaces(result(), tmp_path / "cell.png")
    img = mpimg.imread(out)
    assert out == tmp_path / "cell.png" and img.shape[1] <= 20 * 110 and img.shape[0] <= 12 * 110
    assert cell_surfaces(result(surfaces=False), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_linear_scale_when_a_loss_is_not_positive():
    r = result()
    r.endpoints[0].loss_surface = stored(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), lambda a, b: a * a - 0.5)
    fig = cell_figure(cell_panels(r), "t")
    assert [ax.get_ylabel() for ax in fig.axes if not ax.get_images()] == ["train loss"]


def test_grid_panel_prefers_the_first_pairs_plane():
    r = result()
    r.connectivity = r.connectivity[2:] + r.connectivity[:2]  # polychain listed first
    r.connectivity[0].pair = [0, 2]
    assert grid_panel(r).title == "bezier plane, pair 0–1"
    assert grid_panel(CellResult.from_dict({"endpoints": [{"seed": 5, "loss_surface": bowl()}]})).title == (
        "around endpoint 0 (seed 5)"
    )
    assert grid_panel(result(surfaces=False)) is None


def test_grid_pages_group_paginate_and_skip(tmp_path):
    results = [result("sgd", 1, w, f"s{w}") for w in (64, 16, 256, 32, 128, 8, 512, 1024, 4)]
    results += [result("sam", 2, w, f"a{w}") for w in (16, 32)]
    results += [
        result("sgd", 1, 2048, "failed", status="failed"),
        result("sgd", 1, 4096, "bare", surfaces=False),
        result(None, job="nofields"),
    ]
    pages = grid_pages(results, max_panels=4)
    assert [(g, len(p)) for g, _, p in pages] == [
        ("sam_d2", 2),
        ("sgd_d1", 4),
        ("sgd_d1", 4),
        ("sgd_d1", 1),
        ("cells", 1),
    ]
    titles = [p.tag.split("\n")[0] for _, _, ps in pages for p in ps]
    assert titles[2:11] == [f"w={w} · s{w}" for w in (4, 8, 16, 32, 64, 128, 256, 512, 1024)]  # widths ascending
    assert not {"failed", "bare"} & {t.split(" · ")[-1] for t in titles} and titles[-1] == "nofields"
    assert pages[1][1] == "sgd, depth 1"
    for _, _, panels in pages:
        images = page_figure(panels, "t").axes[0].get_images()
        assert len(images) == len(panels)
        assert len({round(im.get_extent()[0], 6) for im in images}) <= 4  # at most 4 panels a row
    paths = surfaces_grid(results, tmp_path / "figs", max_panels=4)
    names = ["sam_d2_p1", "sgd_d1_p1", "sgd_d1_p2", "sgd_d1_p3", "cells_p1"]
    assert paths == [tmp_path / "figs" / f"surfaces_grid_{n}.png" for n in names]
    assert all(mpimg.imread(p).shape[0] > 300 for p in paths)


def test_grid_full_page_stays_bounded():
    results = [result("sgd", 1, w, str(w)) for w in range(1, 31)]
    ((_, _, panels),) = grid_pages(results)
    fig = page_figure(panels, "t")
    w, h = fig.get_size_inches()
    assert len(fig.axes[0].get_images()) == 30 and w < 11 and h < 19  # 8 rows of 4
    with pytest.raises(ValueError, match="max_panels"):
        grid_pages(results, max_panels=0)


def test_nothing_to_draw(tmp_path):
    results = [result(surfaces=False), result(status="diverged"), CellResult.from_dict({"status": "completed"})]
    assert surfaces_grid(results, tmp_path / "figs") == [] and not (tmp_path / "figs").exists()
    assert surfaces_grid([], tmp_path / "figs") == []


def test_malformed_surfaces_are_skipped():
    r = result()
    r.endpoints[0].loss_surface = {"x": [0, 1], "y": [0, 1], "loss": [[1.0, 2.0]]}  # wrong shape
    r.endpoints[1].loss_surface = {**bowl(), "loss": [[None] * 9] * 9}  # no finite value
    r.connectivity[1].plane_surface = {**plane(), "models_xy": [A, B]}  # no bend
    assert [p.title for p in cell_panels(r)] == ["polychain plane, pair 0–1"]


@pytest.mark.slow
def test_real_thorough_cell(compose_cfg, tmp_path):
    from landscape_sweep.pipeline.cell import run_cell

    fast = [
        "logger=none",
        "trainer.max_epochs=2",
        "data.train_size=512",
        "model.width=16",
        "endpoints.seeds=[0,1]",
        "trainer.enable_progress_bar=false",
        "landscape.sharpness.trace_probes=10",
        "landscape.sharpness.spectrum=false",
        "landscape.sharpness.kinds=[]",
        "landscape.analysis_size=256",
        "landscape.connectivity.num_points=5",
        "landscape.connectivity.sharpness_points=[]",
        "landscape.connectivity.curve.max_epochs=5",
    ]
    on = run_cell(compose_cfg([*fast, "landscape=thorough", "landscape.surface.num_points=5"]), tmp_path / "job")
    assert on.status == "completed", on.error
    on.job = "job"
    panels = cell_panels(on)
    assert [p.title for p in panels] == [
        "around endpoint 0 (seed 0)",
        "around endpoint 1 (seed 1)",
        "bezier plane, pair 0–1",
        "polychain plane, pair 0–1",
    ]
    bezier = panels[2]
    path = next(p for p in on.connectivity if p.method == "bezier")
    t = np.asarray(path.t)[:, None]
    a, b, bend = (np.asarray(xy) for xy in path.plane_surface["models_xy"])
    on_curve = (1 - t) ** 2 * a + 2 * t * (1 - t) * bend + t**2 * b  # the curve's points at the path's t
    plane_loss = RegularGridInterpolator((bezier.y, bezier.x), bezier.loss)(on_curve[:, ::-1])
    # the drawn curve is the evaluated path: its loss interpolated in the 5 x 5 plane is the path's own
    assert plane_loss[1:-1] == pytest.approx(path.train_loss[1:-1], rel=0.02)
    assert plane_loss == pytest.approx(path.train_loss, rel=0.05)  # endpoints: at the grid's coarse edge
    out = cell_surfaces(on, tmp_path / "cell.png")
    assert out.is_file() and mpimg.imread(out).shape[1] > 600

    off = run_cell(compose_cfg([*fast, "landscape=thorough", "landscape.surface.enabled=false"]), tmp_path / "job")
    assert off.status == "completed", off.error
    off.job = "off"
    assert cell_surfaces(off, tmp_path / "off.png") is None and not (tmp_path / "off.png").exists()
    paths = surfaces_grid([on, off], tmp_path / "figs")
    assert paths == [tmp_path / "figs" / "surfaces_grid_sgd_d2_p1.png"]
    ((_, _, grid),) = grid_pages([on, off])
    assert [p.tag for p in grid] == [f"w=16 · job\nbezier 0–1, |θ1−θ0| = {np.linalg.norm(b - a):.3g}"]

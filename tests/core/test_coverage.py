"""Convex-hull coverage (SynAlign appendix A.2.3) against hand-computed geometry and a brute-force merge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from shapely import MultiPoint

from synalign_kedro.core.coverage import (
    coverage_curve,
    coverage_summary,
    coverage_table,
    gp_sequence,
    random_sequence,
)
from synalign_kedro.core.plots import coverage_figure

pytestmark = pytest.mark.usefixtures("single_thread")  # see tests/conftest.py


def grid(side: int = 10) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(side, dtype=float), np.arange(side, dtype=float))
    return np.column_stack([xs.ravel(), ys.ravel()])


def test_single_step_is_hull_of_point_and_its_2d_neighbours():
    points = grid(10)  # total hull: 9 x 9 = 81
    corner = 0  # (0, 0); its 3 nearest others are (1,0), (0,1), (1,1): a unit square
    curve = coverage_curve(points, [corner], k=3)
    assert curve[0] == pytest.approx(1.0 / 81.0)


def test_overlapping_hulls_merge_into_their_convex_hull_and_union_is_smaller():
    points = grid(10)
    # two unit squares at (0,0)-(1,1) and (1,1)-(2,2) touch at a corner: paper merge -> hull of both = area 2
    first, second = 0, 11  # (0,0) and (1,1)
    convex = coverage_curve(points, [first, second], k=3, merge="convex_hull")
    union = coverage_curve(points, [first, second], k=3, merge="union")
    assert convex[0] == pytest.approx(1 / 81)
    assert union[-1] <= convex[-1] + 1e-12
    # reference: merge by hand with shapely
    hull_a = MultiPoint(points[[0, 1, 10, 11]]).convex_hull
    tree_neighbours = np.argsort(np.linalg.norm(points - points[second], axis=1), kind="stable")[:4]
    hull_b = MultiPoint(points[tree_neighbours]).convex_hull
    expected = MultiPoint(np.vstack([points[[0, 1, 10, 11]], points[tree_neighbours]])).convex_hull.area
    assert hull_a.intersects(hull_b)
    assert convex[-1] == pytest.approx(expected / 81)


def test_curve_is_monotone_bounded_and_padded():
    rng = np.random.default_rng(0)
    points = rng.standard_normal((300, 2))
    sequence = random_sequence(300, 40, seed=3)
    curve = coverage_curve(points, sequence, k=4, steps=50)
    assert len(curve) == 50
    assert np.all(np.diff(curve) >= -1e-12) and 0 < curve[-1] <= 1
    assert np.all(curve[40:] == curve[39])
    # selecting every point with its neighbours covers much of the hull, never more than all of it
    full = coverage_curve(points, range(300), k=4)
    assert 0.5 < full[-1] <= 1.0


def test_random_sequence_is_seeded_and_distinct():
    assert random_sequence(100, 20, 1) == random_sequence(100, 20, 1)
    assert random_sequence(100, 20, 1) != random_sequence(100, 20, 2)
    assert len(set(random_sequence(100, 100, 0))) == 100


def test_gp_sequence_is_the_trackers_pivot_order():
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((200, 16))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    sequence = gp_sequence(embeddings, steps=10, k=4, device="cpu")
    assert len(sequence) == 10 and len(set(sequence)) == 10 and sequence[0] == 0


def test_gp_beats_random_on_real_embeddings(sst2_embeddings):
    table = coverage_table(
        sst2_embeddings, steps=30, k=4, random_seeds=[0, 1, 2], max_points=None, tsne_seed=0, device="cpu"
    )
    assert list(table.columns) == ["step", "sampler", "seed", "coverage"]
    assert set(table["sampler"]) == {"gp", "random"}
    assert len(table) == 30 * 4 and table["step"].min() == 1
    summary = coverage_summary(table, at_steps=[30])
    assert summary["coverage_auc_gp"] > summary["coverage_auc_random"]
    assert summary["coverage_gp_at_30"] > summary["coverage_random_at_30"]
    figure = coverage_figure(table)  # the one coverage plotter: one mean curve per sampler
    assert len(figure.axes[0].lines) == 2


def test_summary_and_bad_input():
    table = pd.DataFrame(
        {
            "step": [1, 2, 1, 2, 1, 2],
            "sampler": ["gp", "gp", "random", "random", "random", "random"],
            "seed": [0, 0, 1, 1, 2, 2],
            "coverage": [0.1, 0.3, 0.1, 0.1, 0.1, 0.3],
        }
    )
    summary = coverage_summary(table, at_steps=[2, 99])
    assert summary == pytest.approx(
        {
            "coverage_auc_gp": 0.2,
            "coverage_gp_at_2": 0.3,
            "coverage_auc_random": 0.15,
            "coverage_random_at_2": 0.2,
        }
    )
    with pytest.raises(ValueError, match=r"coverage table lacks the column\(s\)"):
        coverage_summary(table.drop(columns="seed"))
    with pytest.raises(ValueError, match="merge"):
        coverage_curve(grid(3), [0], k=2, merge="hull")
    with pytest.raises(ValueError, match="area"):
        coverage_curve(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), [0], k=1)

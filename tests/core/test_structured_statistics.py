"""Target statistics, two-level binning and its refinement (LLMSYNTHOR.md §1.2), against hand-computed cases."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from synalign_kedro.core.structured.discrepancy import jsd, render_guidance, render_statistic
from synalign_kedro.core.structured.statistics import (
    Statistic,
    binning_from_values,
    target_from_dict,
    target_from_table,
)
from synalign_kedro.core.structured.variables import StructuredInputError, load_variables

VARIABLES = [
    {"name": "x", "type": "numeric", "range": [0, 12]},
    {"name": "mode", "type": "categorical", "categories": ["bike", "car", "transit"]},
]


def table() -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(13.0), "mode": ["bike"] * 7 + ["car"] * 4 + ["transit"] * 2})


def test_quantile_main_bins_and_sub_bins_by_hand():
    binning = binning_from_values(np.arange(13.0), n_main_bins=6, n_sub_bins=8)
    assert binning.edges.tolist() == [0, 2, 4, 6, 8, 10, 12]
    # [0,2) {0,1} ... [10,12] {10,11,12}: the last bin is closed
    assert binning.main_index(np.arange(13.0)).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]
    # values outside the target's range are clipped into the end bins
    assert binning.main_index(np.array([-5.0, 99.0])).tolist() == [0, 5]
    # sub-bins of [10, 12] have width 0.25: 10 -> 0, 11 -> 4, 12 -> 7 (clipped); proportions over all 13
    assert np.allclose(binning.sub_proportions[5] * 13, [1, 0, 0, 0, 1, 0, 0, 1])
    assert np.allclose(binning.sub_proportions.sum(axis=1) * 13, [2, 2, 2, 2, 2, 3])
    assert binning.sub_label(5, 1) == (10.25, 10.5)


def test_refinement_splits_the_most_under_represented_main_bin():
    target = target_from_table(table(), VARIABLES)
    synthetic = pd.DataFrame({"x": [0.5, 2.5, 4.5, 6.5, 8.5, 0.1], "mode": ["bike"] * 6})
    stat = target.statistics(synthetic)[0]
    # p - q = 2/13 - [2,1,1,1,1,0]/6: largest at the last bin (3/13 - 0)
    assert stat.refined_bin == 5
    assert len(stat.labels) == 5 + 8
    assert np.allclose(stat.target * 13, [2, 2, 2, 2, 2, 1, 0, 0, 0, 1, 0, 0, 1])
    assert np.allclose(stat.synthetic * 6, [2, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    assert stat.labels[5] == ((10.0, 10.25),) and stat.labels[-1] == ((11.75, 12.0),)
    assert stat.target.sum() == pytest.approx(1.0)


def test_refinement_ties_take_the_first_bin_and_an_empty_table_is_all_zero():
    target = target_from_table(table(), VARIABLES)
    all_last = pd.DataFrame({"x": [11.0, 11.5], "mode": ["car", "car"]})
    stat = target.statistics(all_last)[0]
    assert stat.refined_bin == 0  # 2/13 - 0 in bins 0..4: the first wins
    assert np.allclose(stat.target[:8] * 13, [1, 0, 0, 0, 1, 0, 0, 0])
    empty = target.statistics(all_last.iloc[:0])
    assert all(np.all(s.synthetic == 0) for s in empty)
    assert empty[0].refined_bin == 5  # Δ = target: the biggest target bin


def test_joint_tables_use_main_bins_and_round_trip_through_dict():
    target = target_from_table(table(), VARIABLES, joints=[["mode", "x"]])
    assert list(target.joints) == [("x", "mode")]  # canonical V order
    joint = target.joints[("x", "mode")]
    assert joint.shape == (6, 3) and joint.sum() == pytest.approx(1.0)
    assert joint[0, 0] * 13 == pytest.approx(2)  # x in [0,2) are bikes
    again = target_from_dict(target.to_dict())
    for name in ("x", "mode"):
        assert np.allclose(again.marginals[name], target.marginals[name])
    assert np.allclose(again.joints[("x", "mode")], joint)
    assert np.allclose(again.binnings["x"].sub_proportions, target.binnings["x"].sub_proportions)


def test_published_aggregates_in_any_axis_order_and_counts():
    stats = {
        "variables": VARIABLES,
        "marginals": {
            "x": {"bins": [0, 6, 12], "proportions": [30, 70]},
            "mode": {"proportions": {"bike": 5, "car": 3, "transit": 2}},
        },
        "joints": [{"variables": ["mode", "x"], "proportions": [[10, 40], [10, 20], [10, 10]]}],
    }
    target = target_from_dict(stats)
    assert np.allclose(target.marginals["x"], [0.3, 0.7])
    assert np.allclose(target.joints[("x", "mode")], np.array([[10, 10, 10], [40, 20, 10]]) / 100)
    assert target.binnings["x"].sub_proportions is None
    assert target.statistics(table())[0].refined_bin is None  # no sub-bin aggregates: no refinement


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"marginals": {"x": {"bins": [0, 6, 12], "proportions": [1, 1]}}}, "marginals.mode: missing"),
        ({"marginals": {"x": {"bins": [0, 6, 99], "proportions": [1, 1]}, "mode": {"proportions": [1, 1, 1]}}}, "leave the range [0.0, 12.0]"),
        ({"marginals": {"x": {"bins": [0, 6, 12], "proportions": [1, 1]}, "mode": {"proportions": {"walk": 1}}}}, "unknown categories ['walk']"),
        ({"marginals": {"x": {"bins": [0, 6, 12], "proportions": [1, -1]}, "mode": {"proportions": [1, 1, 1]}}}, "non-negative"),
    ],
)
def test_bad_aggregates_name_the_entry(patch, message):
    with pytest.raises(StructuredInputError, match=re.escape(message)):
        target_from_dict({"variables": VARIABLES, **patch}, source="stats.yml")


def test_bad_tables_name_column_row_and_expectation():
    bad = table()
    bad.loc[4, "mode"] = "walk"
    with pytest.raises(StructuredInputError, match=r"real\.csv: column 'mode' row 4: 'walk' is not one of"):
        target_from_table(bad, VARIABLES, source="real.csv")
    bad = table()
    bad.loc[2, "x"] = 13.5
    with pytest.raises(StructuredInputError, match=r"column 'x' row 2: 13.5 is outside the range \[0.0, 12.0\]"):
        target_from_table(bad, VARIABLES)
    with pytest.raises(StructuredInputError, match=r"missing column\(s\) \['mode'\]"):
        target_from_table(table()[["x"]], VARIABLES)
    with pytest.raises(StructuredInputError, match="extra"):
        load_variables([{"name": "x", "type": "numeric", "range": [0, 1], "colour": "red"}])


def test_discrepancy_is_signed_and_rendered_positive_first():
    stat = Statistic("marginal", ("mode",), [("bike",), ("car",), ("transit",)], np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5]))
    assert np.allclose(stat.discrepancy, [0.3, 0.0, -0.3])
    assert render_statistic(stat, top_k=5) == "mode: bike +30.0% (target 50.0%, synthetic 20.0%)"
    joint = Statistic(
        "joint",
        ("x", "mode"),
        [((0.0, 6.0), "bike"), ((0.0, 6.0), "car"), ((6.0, 12.0), "bike"), ((6.0, 12.0), "car")],
        np.array([0.1, 0.2, 0.3, 0.4]),
        np.array([0.1, 0.1, 0.1, 0.7]),
    )
    assert render_statistic(joint, top_k=1, show_values=False) == "(x, mode): ([6, 12], bike) +20.0%"
    assert render_statistic(joint, top_k=5, show_values=False) == "(x, mode): ([6, 12], bike) +20.0%, ([0, 6], car) +10.0%"
    aligned = Statistic("marginal", ("mode",), [("bike",), ("car",)], np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    assert render_statistic(aligned, 5) == "mode: aligned (no under-represented cell)"
    marginal, joints = render_guidance([stat, joint], 5, 10, False)
    assert marginal == "mode: bike +30.0%" and joints.startswith("(x, mode): ([6, 12], bike) +20.0%")


def test_jsd_in_bits_against_the_formula():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5])
    m = (p + q) / 2
    kl = lambda a, b: sum(x * np.log2(x / y) for x, y in zip(a, b, strict=True) if x > 0)  # noqa: E731
    assert jsd(p, q) == pytest.approx(0.5 * kl(p, m) + 0.5 * kl(q, m))
    assert jsd(p, p) == pytest.approx(0.0)

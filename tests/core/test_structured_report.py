"""The structured-records run report (core/structured/report.py) on a small hand-made target and synthetic sets."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from synalign_kedro.core.structured.report import (
    answer_lines,
    column_proportions,
    method_distances,
    render_structured_report,
    sampling_noise,
)
from synalign_kedro.core.structured.statistics import target_from_table

from .test_structured_statistics import VARIABLES  # the same two variables: one numeric, one categorical

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def real() -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(13.0), "mode": ["bike"] * 7 + ["car"] * 4 + ["transit"] * 2})


def target_dict() -> dict:
    """What ``structured_target_statistics`` holds: 6 main bins of x (2, 2, 2, 2, 2, 3 of 13), mode 7/4/2, joint."""
    return target_from_table(real(), VARIABLES, [["x", "mode"]], n_main_bins=6, n_sub_bins=2).to_dict()


def records() -> dict[str, pd.DataFrame | None]:
    exact = real()  # the target's own proportions: discrepancy 0
    close = real().assign(mode=["bike"] * 6 + ["car"] * 5 + ["transit"] * 2)  # one record moved: 1/13 on mode
    far = pd.DataFrame({"x": [0.0] * 13, "mode": ["transit"] * 13})  # everything in one cell
    return {"ipf": close, "llmsynthor": exact, "independent_marginals": far, "gaussian_copula": pd.DataFrame(columns=["x", "mode"])}


def test_distances_by_hand_best_first_and_a_skipped_method_last():
    distances = method_distances(target_dict(), records(), {"gaussian_copula": "skipped: needs a real table"})
    assert distances["method"].tolist() == ["llmsynthor", "ipf", "independent_marginals", "gaussian_copula"]
    rows = distances.set_index("method")
    assert rows.loc["llmsynthor", "discrepancy"] == pytest.approx(0.0)
    # ipf: TVD 0 on x, 1/13 on mode, 1/13 on the joint (the moved record changes one x bin's mode) -> mean 2/39
    assert rows.loc["ipf", "tvd_mean"] == pytest.approx(0.5 / 13)
    assert rows.loc["ipf", "discrepancy"] == pytest.approx((0 + 1 / 13 + 1 / 13) / 3)
    assert rows.loc["gaussian_copula", "note"] == "skipped: needs a real table"
    assert np.isnan(rows.loc["gaussian_copula", "discrepancy"])
    # the sampling noise shrinks with the number of records drawn from the target
    assert 0 < sampling_noise(_target(), 1000) < sampling_noise(_target(), 13)


def _target():
    from synalign_kedro.core.structured.statistics import target_from_dict

    return target_from_dict(target_dict())


def test_the_answer_names_the_best_method_and_where_llmsynthor_ranks():
    lines = answer_lines(method_distances(target_dict(), records()))
    assert lines[0].startswith("llmsynthor ranks 1 of 3 methods")
    assert "lower than every baseline (ipf, independent_marginals)" in lines[0]
    assert lines[0].endswith("best: llmsynthor.")
    assert [line.split(":")[0] for line in lines[1:]] == ["llmsynthor", "ipf", "independent_marginals", "gaussian_copula"]
    assert "sampling noise" in lines[2] and "not compared (no records)" in lines[4]
    # LLMSynthor worse than ipf: it says so, and names ipf as the best
    worse = {"llmsynthor": records()["independent_marginals"], "ipf": records()["ipf"]}
    head = answer_lines(method_distances(target_dict(), worse))[0]
    assert head == "llmsynthor ranks 2 of 2 methods by discrepancy to the target statistics: lower than no baseline; not lower than ipf; best: ipf."


def test_column_proportions_cover_every_cell_of_target_and_methods():
    shares = column_proportions(target_dict(), records(), "mode")
    assert shares.index.tolist() == ["bike", "car", "transit"]
    assert list(shares.columns) == ["target", "ipf", "llmsynthor", "independent_marginals"]  # empty table left out
    assert shares["target"].tolist() == pytest.approx([7 / 13, 4 / 13, 2 / 13])
    assert shares["independent_marginals"].tolist() == [0, 0, 1]
    assert len(column_proportions(target_dict(), records(), "x")) == 6  # the main bins


def test_the_page_answers_first_has_a_panel_per_column_and_no_broken_image():
    trace = pd.DataFrame(
        {"iteration": [1, 2], "n_records": [7, 13], "discrepancy_l1": [0.2, 0.05], "tvd_mean": [0.1, 0.02],
         "tvd.x": [0.1, 0.02], "tvd.mode": [0.1, 0.02], "jsd.x__mode": [0.3, 0.1], "wasserstein.x": [1.0, 0.4]}
    )
    page = render_structured_report(
        "LLMSynthor run report: hand-made",
        target_dict(),
        records(),
        trace=trace,
        synthor_report={"n_records": 13, "failed_plans": 0},
        baseline_reports={"ipf": {}, "independent_marginals": {}, "gaussian_copula": {"skipped": "needs a real table"}},
        evaluation=pd.DataFrame({"method": ["llmsynthor", "ipf"], "mode_tvd": [0.0, 0.077]}),
    )
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings[:3] == ["Answer", "Convergence", "Per-column comparison: target vs synthetic"]
    answer = page.split("<h2>Answer</h2>")[1].split("<h2>")[0]
    assert "best: llmsynthor." in answer and "gaussian_copula: not compared (skipped: needs a real table)" in answer
    images = re.findall(r'<img alt="([^"]*)" src="([^"]*)"', page)
    assert [alt for alt, _ in images[1:]] == ["x", "mode"]  # the convergence plot, then one panel per column
    assert len(re.findall(r"<img ", page)) == len(images) == 3
    for _, src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True).startswith(PNG_MAGIC)
    assert "src=\"http" not in page and "<script" not in page


def test_no_trace_and_no_reports_say_not_available():
    page = render_structured_report("t", target_dict(), {"llmsynthor": real()})
    assert "not available (no trace)" in page
    assert len(re.findall(r"<img ", page)) == 2  # the two column panels

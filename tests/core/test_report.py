"""Run report (core/report.py): self-contained, every section present, missing inputs shown as such."""

from __future__ import annotations

import base64
import json
import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from synalign_kedro.core import plots, report
from synalign_kedro.core.fewshot import mean_interval

SECTIONS = [
    "Answer",
    "Evaluation",
    "Coverage curves",
    "Figures (t-SNE, ...)",
    "Alignment weights",
    "Privacy",
    "Offline A/B estimate",
    "LLM accounting",
    "Examples per label: real vs synthetic",
]


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings: list[str] = []
        self.sources: list[str] = []
        self.external: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "h2":
            self._in_h2 = True
        if tag == "img":
            self.sources.append(attributes["src"])
        if tag in ("script", "link") or (tag != "img" and "src" in attributes):
            self.external.append(tag)

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.headings.append(data)


def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def test_report_with_nothing_available_still_has_every_section():
    page = report.render_run_report("Run", {"dataset": "sst2"})
    parsed = _parse(page)
    assert parsed.headings == SECTIONS
    assert page.count(report.NOT_AVAILABLE) >= len(SECTIONS)
    assert parsed.sources == [] and parsed.external == []


def test_report_inlines_images_and_escapes_text():
    coverage = pd.DataFrame(
        {
            "step": [0, 1, 2] * 4,
            "sampler": ["gp"] * 6 + ["random"] * 6,
            "seed": [0, 0, 0, 1, 1, 1] * 2,
            "coverage": np.linspace(0, 1, 12),
        }
    )
    coverage_png = plots.figure_png(plots.coverage_figure(coverage))
    weights_png = plots.figure_png(plots.weights_histogram(np.random.default_rng(0).dirichlet(np.ones(50))))
    assert coverage_png.startswith(b"\x89PNG")
    examples = report.examples_by_label(
        pd.DataFrame({"text": ["<b>real</b> one", "real two", "real three"], "label": ["pos", "pos", "neg"]}),
        pd.DataFrame({"text": ["syn <script>alert(1)</script>", "syn two"], "label": ["pos", "neg"]}),
        per_label=2,
    )
    page = report.render_run_report(
        "Run <1>",
        {"dataset": "sst2", "MLflow run id": None},
        evaluation_table=pd.DataFrame({"variant": ["gold", "synalign_mmd"], "accuracy": [0.81, 0.83]}),
        coverage_png=coverage_png,
        figures={"t-SNE": None, "other": weights_png},
        weights_png=weights_png,
        privacy_summary={
            "n_synthetic": 10,
            "n_flagged": 1,
            "flagged_fraction": 0.1,
            "counts": {"exact_copy": 1},
            "thresholds": {"cosine_threshold": 0.95},
            "dcr_quantiles": {"synthetic": {"q05": 0.1}, "holdout": {"q05": 0.2}},
        },
        flagged_rows=pd.DataFrame({"synthetic_id": ["s1"], "text": ["copied"]}),
        ab_estimate={
            "control_accuracy": 0.8,
            "treatment_accuracy": 0.82,
            "accuracy_difference": 0.02,
            "accuracy_difference_ci_low": -0.01,
            "accuracy_difference_ci_high": 0.05,
            "confidence": 0.95,
            "mcnemar_p_value": 0.3,
        },
        llm_usage={"synalign": {"requests": 12, "completion_tokens": 3400}, "simprompt": None},
        examples=examples,
    )
    parsed = _parse(page)
    assert parsed.headings == SECTIONS
    assert parsed.external == []
    assert len(parsed.sources) == 3
    decoded = [base64.b64decode(src.split(",", 1)[1]) for src in parsed.sources]
    assert decoded == [coverage_png, weights_png, weights_png]
    assert "<script>" not in page and "&lt;script&gt;" in page and "Run &lt;1&gt;" in page
    assert "simprompt" in page and re.search(r"not available.*t-SNE", page, re.S)
    assert "95 % paired bootstrap CI</td><td>[-0.0100, 0.0500]" in page
    assert "<td>3400</td>" in page  # counts print as integers


def test_the_report_says_what_the_distances_are_measured_against():
    table = pd.DataFrame(
        {
            "variant": ["gold", "synalign_random", "synalign_mmd"],
            "wasserstein": [0.9, 1.1, 1.0],
            "mmd": [0.001, 0.02, 0.01],
            "mmd_bandwidth": [0.8734, 0.8734, 0.8734],
            "distribution_reference": ["real_heldout"] * 3,
        }
    )
    page = report.render_run_report("Run", {"dataset": "sst2"}, evaluation_table=table)
    evaluation = page.split("<h2>Evaluation</h2>", 1)[1].split("<h2>", 1)[0]
    assert "measured against real_heldout (held-out real rows that nothing is fitted on" in evaluation
    assert "one RBF bandwidth for every row: 0.8734" in evaluation
    assert "real train vs held-out" in evaluation
    # a table without these columns (an older run) gets no claim about its reference
    old = report.render_run_report("Run", {}, evaluation_table=table[["variant", "wasserstein", "mmd"]])
    assert "measured against" not in old


def test_examples_by_label_pairs_texts_per_label():
    real = pd.DataFrame({"text": [f"r{i}" for i in range(10)], "label": ["a"] * 6 + ["b"] * 4})
    synthetic = pd.DataFrame({"text": ["s0", "s1"], "label": ["a", "c"]})
    examples = report.examples_by_label(real, synthetic, per_label=3, seed=0)
    assert examples.groupby("label").size().to_dict() == {"a": 3, "b": 3, "c": 1}
    assert set(examples.loc[examples["label"] == "a", "real_text"]) <= {f"r{i}" for i in range(6)}
    assert examples.loc[examples["label"] == "c", "real_text"].tolist() == [""]


def test_the_report_module_reads_no_file():
    """Every table and figure is a node input: the report has no file reader left (no stale file embedded)."""
    for name in ("collect_figures", "coverage_png_from_csv", "read_optional_bytes", "read_optional_csv"):
        assert not hasattr(report, name), name
    with pytest.raises(ValueError, match="coverage"):
        plots.coverage_figure(pd.DataFrame({"step": [1]}))


GOLD_SEEDS = [0.80, 0.78, 0.82]
MMD_SEEDS = [0.84, 0.80, 0.85]  # per-seed differences +0.04, +0.02, +0.03
RANDOM_SEEDS = [0.79, 0.77, 0.83]  # -0.01, -0.01, +0.01


def _answer_table() -> pd.DataFrame:
    """Gold, two variants with three paired seeds each, and one with no seed evaluated (an empty pool)."""
    return pd.DataFrame(
        {
            "variant": ["gold", "synalign_random", "synalign_mmd", "simprompt"],
            "wasserstein": [0.50, 0.70, 0.60, math.nan],
            "mmd": [0.004, 0.020, 0.012, math.nan],
            "accuracy": [np.mean(GOLD_SEEDS), np.mean(RANDOM_SEEDS), np.mean(MMD_SEEDS), math.nan],
            "macro_f1": [0.70, 0.71, 0.75, math.nan],
            "n_seeds": [3, 3, 3, 0],
            "distribution_reference": ["real_heldout"] * 4,
            # the JSON text the evaluation table stores (core.evaluation.evaluation_table)
            "accuracy_per_seed": [json.dumps(v) for v in (GOLD_SEEDS, RANDOM_SEEDS, MMD_SEEDS, [])],
            "macro_f1_per_seed": [json.dumps(v) for v in ([0.7] * 3, [0.71] * 3, [0.74, 0.75, 0.76], [])],
        }
    )


def test_the_answer_pairs_seeds_and_uses_mean_interval():
    differences = report.score_differences(_answer_table()).set_index(["variant", "score"])
    mmd = differences.loc[("synalign_mmd", "accuracy")]
    mean, half = mean_interval([0.04, 0.02, 0.03])
    assert mean == pytest.approx(0.03) and half == pytest.approx(4.303 * 0.01 / math.sqrt(3), rel=1e-3)
    assert mmd["difference"] == pytest.approx(mean)
    assert (mmd["ci_low"], mmd["ci_high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert mmd["n_seeds"] == 3 and mmd["note"] == ""
    random_mean, random_half = mean_interval([-0.01, -0.01, 0.01])
    assert differences.loc[("synalign_random", "accuracy"), "ci_high"] == pytest.approx(
        random_mean + random_half
    )
    assert differences.loc[("simprompt", "accuracy"), "note"] == "no seed evaluated"


def test_the_answer_says_it_in_sentences_best_first():
    lines = report.answer_lines(_answer_table())
    assert [line.split(":", 1)[0] for line in lines] == ["synalign_mmd", "synalign_random", "simprompt"]
    mean, half = mean_interval([0.04, 0.02, 0.03])
    assert lines[0].startswith(
        f"synalign_mmd: +0.0300 accuracy [{mean - half:+.4f}, {mean + half:+.4f}] vs real alone (gold): better; "
    )
    assert "(3 paired seeds, 95 % interval)" in lines[0]
    assert (
        "Distance to real_heldout (lower is closer): MMD² 0.0120 (gold 0.0040), W1 0.6000 (gold 0.5000)"
        in lines[0]
    )
    assert "accuracy [" in lines[1] and ": not significant" in lines[1]
    assert lines[2].startswith("simprompt: no downstream score (no seed evaluated)")
    assert "MMD² n/a (gold 0.0040)" in lines[2]


def test_the_answer_opens_the_report():
    page = report.render_run_report("Run", {"dataset": "sst2"}, evaluation_table=_answer_table())
    assert page.index("<h2>Answer</h2>") < page.index('class="meta"') < page.index("<h2>Evaluation</h2>")
    answer = page.split("<h2>Answer</h2>", 1)[1].split("<h2>", 1)[0]
    assert answer.count("<li>") == 3 and "synalign_mmd: +0.0300 accuracy" in answer


def test_without_per_seed_scores_the_answer_says_why_there_is_no_interval():
    table = _answer_table().drop(columns=["accuracy_per_seed", "macro_f1_per_seed"])
    line = report.answer_lines(table)[0]
    assert line.startswith(
        "synalign_mmd: +0.0300 accuracy vs real alone (gold); +0.0500 macro-F1; no interval:"
    )
    assert "only the mean over seeds" in line
    one_seed = _answer_table().assign(
        accuracy_per_seed=[json.dumps(v[:1]) for v in (GOLD_SEEDS, RANDOM_SEEDS, MMD_SEEDS, [])]
    )
    assert "no interval: one seed" in report.answer_lines(one_seed)[0]
    assert report.answer_lines(None) == [] and report.answer_lines(_answer_table().head(1)) == [
        "only gold was evaluated: no synthetic variant to compare with real data alone"
    ]

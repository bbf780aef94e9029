"""The few-shot benchmark's splits, sampling rule, held-out metrics and paired intervals (issue 13)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from synalign_kedro.core.evaluation import EvaluationSettings, heldout_bandwidth
from synalign_kedro.core.fewshot import (
    FewShotError,
    classifier_two_sample_auc,
    draw_per_label,
    heldout_distances,
    nested_shots,
    paired_differences,
)
from synalign_kedro.core.ingestion import hold_out
from synalign_kedro.core.metrics import mmd_rbf


def frame(counts: dict[str, int]) -> pd.DataFrame:
    rows = [
        {"row_id": f"{label}-{i}", "text": f"{label} text {i}", "label": label}
        for label, count in counts.items()
        for i in range(count)
    ]
    return pd.DataFrame(rows)


def test_heldout_part_is_disjoint_and_stratified():
    real = frame({"a": 40, "b": 20})
    visible, heldout = hold_out(real, 0.5, seed=0, where="toy")
    assert set(visible["row_id"]).isdisjoint(heldout["row_id"])
    assert len(visible) + len(heldout) == len(real)
    assert heldout["label"].value_counts().to_dict() == {"a": 20, "b": 10}


def test_shots_are_nested_per_seed_exact_per_class_and_inside_the_visible_part():
    visible, heldout = hold_out(frame({"a": 80, "b": 80, "c": 80}), 0.5, seed=0, where="toy")
    subsets = nested_shots(visible, [8, 32], seed=3)
    assert subsets[8]["label"].value_counts().to_dict() == {"a": 8, "b": 8, "c": 8}
    assert subsets[32]["label"].value_counts().to_dict() == {"a": 32, "b": 32, "c": 32}
    assert set(subsets[8]["row_id"]) <= set(subsets[32]["row_id"])
    assert set(subsets[32]["row_id"]).isdisjoint(heldout["row_id"])
    other_seed = nested_shots(visible, [8, 32], seed=4)
    assert set(other_seed[8]["row_id"]) != set(subsets[8]["row_id"])


def test_too_few_rows_for_the_shots_names_the_class_and_the_counts():
    with pytest.raises(FewShotError, match=r"class 'b' of sst2 has 5 rows .* fewer than shots=8"):
        nested_shots(frame({"a": 20, "b": 5}), [8], seed=0, dataset="sst2")


def test_bandwidth_comes_from_heldout_only_so_every_variant_shares_it():
    rng = np.random.default_rng(0)
    heldout = rng.normal(size=(60, 5))
    bandwidth = heldout_bandwidth(heldout, EvaluationSettings(mmd={"device": "cpu"}), seed=0)
    pairwise = np.linalg.norm(heldout[:, None] - heldout[None], axis=-1)[np.triu_indices(60, 1)]
    assert bandwidth == pytest.approx(np.median(pairwise), rel=1e-9)
    near, far = rng.normal(size=(30, 5)), rng.normal(loc=3.0, size=(30, 5))
    scores = {name: heldout_distances(heldout, data, bandwidth, "toy") for name, data in [("near", near), ("far", far)]}
    assert scores["near"]["heldout_mmd_toy"] == pytest.approx(mmd_rbf(heldout, near, bandwidth=bandwidth))
    assert scores["near"]["heldout_mmd_toy"] < scores["far"]["heldout_mmd_toy"]
    assert scores["near"]["heldout_wasserstein_toy"] < scores["far"]["heldout_wasserstein_toy"]


def test_two_sample_auc_is_near_half_for_one_distribution_and_near_one_for_two():
    rng = np.random.default_rng(1)
    same = classifier_two_sample_auc(rng.normal(size=(200, 4)), rng.normal(size=(150, 4)), seed=0)
    apart = classifier_two_sample_auc(rng.normal(size=(200, 4)), rng.normal(loc=2.0, size=(150, 4)), seed=0)
    assert abs(same - 0.5) < 0.1
    assert apart > 0.95
    assert math.isnan(classifier_two_sample_auc(np.zeros((1, 4)), np.ones((5, 4))))


def test_random_and_weighted_draws_have_equal_size_per_label_without_repeats():
    labels = ["a"] * 10 + ["b"] * 6 + ["c"] * 3
    uniform = draw_per_label(np.ones(19), labels, per_label=4, seed=0)
    weights = np.r_[np.linspace(0.1, 1.0, 10), np.ones(6), [0.0, 0.0, 1.0]]
    weighted = draw_per_label(weights, labels, per_label=4, seed=0)
    counts = lambda rows: pd.Series(np.asarray(labels)[rows]).value_counts().to_dict()  # noqa: E731
    assert counts(uniform) == {"a": 4, "b": 4, "c": 3}
    assert counts(weighted) == {"a": 4, "b": 4, "c": 1}  # only one row of c has weight: no row twice
    assert len(set(weighted)) == len(weighted)


def test_draw_follows_the_weights():
    labels = ["a"] * 4
    picks = np.concatenate([draw_per_label(np.array([8.0, 1.0, 1.0, 0.0]), labels, 1, seed) for seed in range(3000)])
    shares = np.bincount(picks, minlength=4) / len(picks)
    assert shares == pytest.approx([0.8, 0.1, 0.1, 0.0], abs=0.03)


def test_paired_differences_match_a_hand_computed_t_interval():
    rows = []
    gold = [0.60, 0.62, 0.58]
    method = [0.65, 0.64, 0.66]
    for seed, (g, m) in enumerate(zip(gold, method, strict=True)):
        rows.append({"dataset": "d", "shots": 8, "seed": seed, "method": "gold", "accuracy": g})
        rows.append({"dataset": "d", "shots": 8, "seed": seed, "method": "synalign_mmd", "accuracy": m})
    result = paired_differences(pd.DataFrame(rows), "accuracy").iloc[0]
    differences = np.array(method) - np.array(gold)
    half = stats.t.ppf(0.975, 2) * differences.std(ddof=1) / np.sqrt(3)
    assert result["mean_difference"] == pytest.approx(differences.mean())
    assert result["ci_low"] == pytest.approx(differences.mean() - half)
    assert result["ci_high"] == pytest.approx(differences.mean() + half)
    assert result["n_seeds"] == 3

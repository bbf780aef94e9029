"""A/B sets and the offline A/B estimate (core/ab_testing.py), against brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from synalign_kedro.core import ab_testing


@pytest.fixture()
def real_train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(20)],
            "text": [f"real {i}" for i in range(20)],
            "label": ["a", "b"] * 10,
        }
    )


@pytest.fixture()
def synthetic() -> pd.DataFrame:
    weights = np.arange(1, 13, dtype=float)
    return pd.DataFrame(
        {
            "synthetic_id": [f"s{i}" for i in range(12)],
            "text": [f"synthetic {i}" for i in range(12)],
            "label": ["a", "b", "c"] + ["a", "b"] * 4 + ["a"],
            "method": "synalign",
            "weight": weights / weights.sum(),
        }
    )


def test_control_is_real_train_only(real_train):
    control = ab_testing.control_set(real_train)
    assert list(control.columns) == ab_testing.EXPORT_COLUMNS
    assert (control["source"] == "real").all()
    assert control["example_id"].tolist() == real_train["row_id"].tolist()
    assert control["alignment_weight"].isna().all()


def test_treatment_is_control_plus_variant_minus_flagged(real_train, synthetic):
    sets = ab_testing.build_ab_sets(real_train, synthetic, "synalign_mmd", flagged_ids=["s1", "s4"])
    assert (sets.control["source"] == "real").all()
    treatment_real = sets.treatment[sets.treatment["source"] == "real"].reset_index(drop=True)
    pd.testing.assert_frame_equal(treatment_real, sets.control)
    added = sets.treatment[sets.treatment["source"] == "synthetic"]
    # s2 has label "c", which no real row has: dropped too
    assert added["example_id"].tolist() == [f"s{i}" for i in range(12) if i not in (1, 2, 4)]
    assert (added["variant"] == "synalign_mmd").all() and (added["method"] == "synalign").all()
    np.testing.assert_allclose(
        added["alignment_weight"].to_numpy(),
        synthetic.set_index("synthetic_id").loc[added["origin_id"], "weight"],
    )
    assert sets.selection["n_flagged_dropped"] == 2 and sets.selection["n_unknown_label_dropped"] == 1


def test_flagged_rows_are_kept_when_asked(real_train, synthetic):
    sets = ab_testing.build_ab_sets(real_train, synthetic, "v", flagged_ids=["s1"], drop_flagged=False)
    assert "s1" in set(sets.treatment["example_id"])
    assert sets.selection["n_flagged"] == 1 and sets.selection["n_flagged_dropped"] == 0


def test_mixing_ratio_draws_without_replacement_uniformly_or_by_weight(real_train, synthetic):
    synthetic = synthetic.copy()
    synthetic.loc[[0, 3, 5], "weight"] = 0.0  # never drawn
    for seed in range(5):
        sets = ab_testing.build_ab_sets(
            real_train, synthetic, "v", ["s7"], mixing_ratio=0.25, mixing_sampling="weight", seed=seed
        )
        added = sets.treatment[sets.treatment["source"] == "synthetic"]
        assert len(added) == round(0.25 * len(real_train))
        assert added["example_id"].is_unique
        assert not {"s0", "s3", "s5", "s7", "s2"} & set(added["example_id"])
        # kept in pool order
        assert added["origin_id"].tolist() == sorted(added["origin_id"], key=lambda s: int(s[1:]))
    # uniform: zero-weight rows can be drawn; over many seeds every eligible row is
    drawn = set()
    for seed in range(40):
        sets = ab_testing.build_ab_sets(real_train, synthetic, "v", ["s7"], mixing_ratio=0.25, seed=seed)
        drawn |= set(sets.treatment.loc[sets.treatment["source"] == "synthetic", "example_id"])
    assert drawn == {f"s{i}" for i in range(12)} - {"s2", "s7"}
    more = ab_testing.build_ab_sets(real_train, synthetic, "v", mixing_ratio=10.0)
    assert more.selection["n_synthetic_in_treatment"] == 11  # every row with a real label


def test_rows_resampled_with_replacement_get_unique_stable_ids(real_train, synthetic):
    resampled = synthetic.iloc[[0, 0, 3, 0, 3]].reset_index(drop=True)
    sets = ab_testing.build_ab_sets(real_train, resampled, "v")
    added = sets.treatment[sets.treatment["source"] == "synthetic"]
    assert added["example_id"].tolist() == ["s0", "s0~1", "s3", "s0~2", "s3~1"]
    assert added["origin_id"].tolist() == ["s0", "s0", "s3", "s0", "s3"]


def test_bad_inputs_name_the_problem(real_train, synthetic):
    with pytest.raises(ValueError, match="mixing_ratio"):
        ab_testing.build_ab_sets(real_train, synthetic, "v", mixing_ratio=-1)
    with pytest.raises(ValueError, match="mixing_sampling must be one of"):
        ab_testing.build_ab_sets(real_train, synthetic, "v", mixing_ratio=0.5, mixing_sampling="best")
    with pytest.raises(ValueError, match="lacks the column"):
        ab_testing.build_ab_sets(real_train, synthetic.drop(columns="text"), "v")
    with pytest.raises(ValueError, match="duplicated row_id"):
        ab_testing.control_set(pd.concat([real_train, real_train.head(1)]))


def test_counts_by_label_and_source(real_train, synthetic):
    sets = ab_testing.build_ab_sets(real_train, synthetic, "v")
    counts = ab_testing.counts_by_label_and_source(sets.treatment)
    assert counts == {"real": {"a": 10, "b": 10}, "synthetic": {"a": 6, "b": 5}}


def _binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided binomial p-value at p = 1/2: sum of the outcomes no more likely than k."""
    pmf = [math.comb(n, i) / 2**n for i in range(n + 1)]
    return min(1.0, sum(p for p in pmf if p <= pmf[k] * (1 + 1e-7)))


def test_mcnemar_matches_the_exact_binomial_sum():
    rng = np.random.default_rng(0)
    control = rng.random(300) < 0.7
    treatment = control.copy()
    flip = rng.choice(300, size=40, replace=False)
    treatment[flip] = ~treatment[flip]
    result = ab_testing.mcnemar_exact(treatment, control)
    b = int(np.sum(control & ~treatment))
    c = int(np.sum(treatment & ~control))
    assert (result["control_only"], result["treatment_only"]) == (b, c)
    assert result["p_value"] == pytest.approx(_binomial_two_sided(c, b + c), rel=1e-9)
    assert ab_testing.mcnemar_exact(control, control)["p_value"] == 1.0


def test_paired_bootstrap_matches_a_numpy_reference():
    rng = np.random.default_rng(1)
    control = (rng.random(400) < 0.70).astype(float)
    treatment = np.where(rng.random(400) < 0.1, 1.0, control)
    result = ab_testing.paired_bootstrap_difference(treatment, control, n_resamples=4000, confidence=0.9, seed=2)
    assert result["difference"] == pytest.approx(treatment.mean() - control.mean())
    index = np.random.default_rng(99).integers(0, 400, size=(4000, 400))
    reference = treatment[index].mean(axis=1) - control[index].mean(axis=1)
    low, high = np.quantile(reference, [0.05, 0.95])
    assert result["ci_low"] == pytest.approx(low, abs=0.006)
    assert result["ci_high"] == pytest.approx(high, abs=0.006)
    assert result["ci_low"] <= result["difference"] <= result["ci_high"]
    same = ab_testing.paired_bootstrap_difference(control, control)
    assert same["ci_low"] == same["ci_high"] == same["difference"] == 0.0


def test_offline_estimate_on_separable_data():
    rng = np.random.default_rng(3)
    centres = np.eye(4)[:2] * 3

    def sample(n):
        labels = rng.integers(0, 2, size=n)
        return centres[labels] + rng.normal(size=(n, 4)), np.array(["neg", "pos"])[labels]

    train_x, train_y = sample(40)
    extra_x, extra_y = sample(40)
    test_x, test_y = sample(200)
    estimate = ab_testing.offline_ab_estimate(
        train_x,
        train_y,
        np.vstack([train_x, extra_x]),
        np.concatenate([train_y, extra_y]),
        test_x,
        test_y,
        n_resamples=300,
    )
    assert estimate["control_accuracy"] > 0.9 and estimate["treatment_accuracy"] > 0.9
    assert estimate["accuracy_difference"] == pytest.approx(
        estimate["treatment_accuracy"] - estimate["control_accuracy"]
    )
    assert estimate["n_train_treatment"] == 80 and estimate["n_test"] == 200
    assert 0.0 <= estimate["mcnemar_p_value"] <= 1.0
    same = ab_testing.offline_ab_estimate(train_x, train_y, train_x, train_y, test_x, test_y, n_resamples=100)
    assert same["accuracy_difference"] == 0.0 and same["mcnemar_p_value"] == 1.0
    metrics = ab_testing.ab_metrics(estimate)
    assert metrics["mcnemar_p_value"] == estimate["mcnemar_p_value"]


def test_evaluation_row_lookup():
    table = pd.DataFrame(
        {"variant": ["gold", "SynAlign_MMD", "synthetic_pool_simprompt"], "accuracy": [0.8, 0.85, np.nan]}
    )
    assert ab_testing.evaluation_row(table, "synalign_mmd") == {"variant": "SynAlign_MMD", "accuracy": 0.85}
    assert ab_testing.evaluation_row(table, "simprompt") == {
        "variant": "synthetic_pool_simprompt",
        "accuracy": None,
    }
    assert ab_testing.evaluation_row(table, "attrprompt") is None
    assert ab_testing.evaluation_row(None, "synalign_mmd") is None


def test_an_empty_variant_gives_treatment_equal_to_control(real_train, synthetic):
    sets = ab_testing.build_ab_sets(real_train, synthetic.head(0), "v", mixing_ratio=0.5)
    pd.testing.assert_frame_equal(sets.treatment, sets.control)
    assert sets.selection["n_synthetic_in_treatment"] == 0

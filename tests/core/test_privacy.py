"""Privacy checks (core/privacy.py) against brute-force references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synalign_kedro.core import privacy


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _char_ngrams(text: str, n: int) -> set[str]:
    norm = privacy.copy_key(text)
    return {norm[i : i + n] for i in range(len(norm) - n + 1)}


def _brute_jaccard(synthetic: list[str], real: list[str], n: int) -> np.ndarray:
    best = np.zeros(len(synthetic))
    for i, s in enumerate(synthetic):
        a = _char_ngrams(s, n)
        for r in real:
            b = _char_ngrams(r, n)
            if a and (a | b):
                best[i] = max(best[i], len(a & b) / len(a | b))
    return best


@pytest.fixture()
def small_sets(sst2_train):
    """Real train / test / synthetic frames made of distinct SST-2 texts, with random unit embeddings."""
    texts = sst2_train["text"].tolist()
    labels = sst2_train["label"].tolist()
    train = pd.DataFrame({"row_id": [f"tr{i}" for i in range(60)], "text": texts[:60], "label": labels[:60]})
    test = pd.DataFrame(
        {"row_id": [f"te{i}" for i in range(40)], "text": texts[60:100], "label": labels[60:100]}
    )
    synthetic = pd.DataFrame(
        {"synthetic_id": [f"s{i}" for i in range(30)], "text": texts[100:130], "label": labels[100:130]}
    )
    rng = np.random.default_rng(0)
    return (
        train,
        test,
        synthetic,
        _unit(rng.normal(size=(60, 32))),
        _unit(rng.normal(size=(40, 32))),
        _unit(rng.normal(size=(30, 32))),
    )


def test_copy_key_ignores_case_width_and_whitespace():
    assert privacy.copy_key("  Hello\tWORLD \n ！") == privacy.copy_key("hello world !")


def test_exact_copy_matches_points_to_the_first_real_copy():
    real = ["A good film .", "bad movie", "a  GOOD film ."]
    matches = privacy.exact_copy_matches(["a good film .", "new text", "BAD movie"], real)
    assert matches.tolist() == [0, -1, 1]


def test_nearest_cosine_matches_brute_force_across_chunks():
    rng = np.random.default_rng(1)
    query, reference = rng.normal(size=(23, 8)) * 3, rng.normal(size=(17, 8))
    similarity, index = privacy.nearest_cosine(query, reference, chunk_size=5)
    full = _unit(query) @ _unit(reference).T
    np.testing.assert_allclose(similarity, full.max(axis=1), atol=1e-12)
    np.testing.assert_array_equal(index, full.argmax(axis=1))
    dcr, dcr_index = privacy.distance_to_closest_record(query, reference, chunk_size=4)
    np.testing.assert_allclose(dcr, 1 - full.max(axis=1), atol=1e-12)
    np.testing.assert_array_equal(dcr_index, index)


def test_char_ngram_jaccard_matches_python_sets(sst2_train):
    real = sst2_train["text"].iloc[:40].tolist()
    # copies with one word changed, unrelated texts, and a text shorter than the n-gram
    synthetic = [
        real[3].replace(" the ", " a ", 1) + " indeed",
        real[10],
        *sst2_train["text"].iloc[500:510],
        "ok",
    ]
    jaccard, index = privacy.nearest_char_ngram_jaccard(synthetic, real, ngram_size=5, chunk_size=3)
    np.testing.assert_allclose(jaccard, _brute_jaccard(synthetic, real, 5), atol=1e-9)
    assert index[1] == 10 and jaccard[1] == pytest.approx(1.0)
    assert index[-1] == -1 and jaccard[-1] == 0.0


def test_planted_copy_and_near_duplicate_are_flagged(small_sets):
    train, test, synthetic, e_train, e_test, e_synthetic = small_sets
    synthetic = synthetic.copy()
    e_synthetic = e_synthetic.copy()
    # s0: verbatim copy of a training text (different case and spacing); the embedder maps it to the same vector
    synthetic.loc[0, "text"] = "  " + train.loc[5, "text"].upper()
    e_synthetic[0] = e_train[5]
    # s1: the longest *test* text with one extra word (char n-gram near-duplicate), embedding unrelated
    longest = int(test["text"].str.len().idxmax())
    synthetic.loc[1, "text"] = test.loc[longest, "text"] + " indeed"
    # s2: embedding almost identical to a training row (DCR ~ 0), text unrelated
    e_synthetic[2] = _unit(e_train[7:8] + 0.01 * np.random.default_rng(3).normal(size=(1, 32)))[0]

    result = privacy.check_privacy(synthetic, train, test, e_synthetic, e_train, e_test)
    rows = result.rows.set_index("synthetic_id")
    assert rows.loc["s0", "exact_copy_of"] == "tr5"
    assert privacy.FLAG_EXACT_COPY in rows.loc["s0", "reasons"]
    assert privacy.FLAG_EMBEDDING_NEAR_DUPLICATE in rows.loc["s0", "reasons"]
    assert rows.loc["s1", "char_jaccard_nearest_real_id"] == f"te{longest}"
    assert rows.loc["s1", "reasons"] == privacy.FLAG_CHAR_NGRAM_NEAR_DUPLICATE
    assert (
        privacy.FLAG_LOW_DCR in rows.loc["s2", "reasons"] and rows.loc["s2", "dcr_nearest_train_id"] == "tr7"
    )
    assert {"s0", "s1", "s2"} <= set(result.flagged_ids)
    # every flagged row has a reason, every unflagged row none
    assert (rows["flagged"] == (rows["reasons"] != "")).all()
    assert result.summary["n_flagged"] == len(result.flagged) == int(rows["flagged"].sum())
    assert result.summary["counts"][privacy.FLAG_EXACT_COPY] == 1


def test_dcr_rule_and_summary_follow_the_holdout_baseline(small_sets):
    train, test, synthetic, e_train, e_test, e_synthetic = small_sets
    thresholds = privacy.PrivacyThresholds(dcr_holdout_quantile=0.05)
    result = privacy.check_privacy(synthetic, train, test, e_synthetic, e_train, e_test, thresholds)
    holdout_dcr = 1 - (e_test @ e_train.T).max(axis=1)
    synthetic_dcr = 1 - (e_synthetic @ e_train.T).max(axis=1)
    cutoff = np.quantile(holdout_dcr, 0.05)
    assert result.summary["thresholds"]["dcr_holdout_cutoff"] == pytest.approx(cutoff)
    assert result.summary["dcr_quantiles"]["holdout"]["q50"] == pytest.approx(np.median(holdout_dcr))
    assert result.summary["dcr_quantiles"]["synthetic"]["q05"] == pytest.approx(
        np.quantile(synthetic_dcr, 0.05)
    )
    expected_low = (synthetic_dcr < cutoff) | (synthetic_dcr < 1 - thresholds.cosine_threshold)
    got_low = result.rows["reasons"].str.contains(privacy.FLAG_LOW_DCR).to_numpy()
    np.testing.assert_array_equal(got_low, expected_low)
    metrics = privacy.privacy_metrics(result.summary)
    assert metrics["n_flagged"] == result.summary["n_flagged"]
    assert metrics["dcr_holdout_q50"] == pytest.approx(np.median(holdout_dcr))


def test_bad_inputs_name_the_problem(small_sets):
    train, test, synthetic, e_train, e_test, e_synthetic = small_sets
    with pytest.raises(ValueError, match="synthetic has 30 rows but its embeddings have 29"):
        privacy.check_privacy(synthetic, train, test, e_synthetic[:29], e_train, e_test)
    with pytest.raises(ValueError, match=r"real_train lacks the column\(s\) \['row_id'\]"):
        privacy.check_privacy(synthetic, train.drop(columns="row_id"), test, e_synthetic, e_train, e_test)
    with pytest.raises(ValueError, match="embedding dimensions differ"):
        privacy.nearest_cosine(e_synthetic, e_train[:, :10])
    with pytest.raises(ValueError, match="cosine_threshold"):
        privacy.PrivacyThresholds(cosine_threshold=1.5)


def test_an_empty_synthetic_set_gives_an_empty_report(small_sets):
    train, test, synthetic, e_train, e_test, _ = small_sets
    result = privacy.check_privacy(synthetic.head(0), train, test, np.zeros((0, 32)), e_train, e_test)
    assert len(result.rows) == 0 and result.flagged_ids == []
    assert result.summary["n_flagged"] == 0 and result.summary["flagged_fraction"] == 0.0
    assert result.summary["dcr_quantiles"]["synthetic"]["q50"] is None
    assert "dcr_synthetic_q50" not in privacy.privacy_metrics(result.summary)

"""Downstream classifier (SynAlign sec. 4.2): determinism per seed, meaningful spread across seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from synalign_kedro.core.classifier import (
    bootstrap_indices,
    evaluate_downstream,
    filter_synthetic_samples,
    finetune_downstream,
)


@pytest.fixture
def blobs():
    """Three overlapping Gaussian classes in 10-d: a noisy problem, so training-set changes show up."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=1.0, size=(3, 10))

    def draw(n):
        labels = rng.integers(0, 3, size=n)
        return centres[labels] + rng.normal(scale=1.5, size=(n, 10)), np.array(["a", "b", "c"])[labels]

    train, train_labels = draw(150)
    test, test_labels = draw(200)
    synthetic, synthetic_labels = draw(60)
    return train, train_labels, test, test_labels, synthetic, synthetic_labels


def test_same_seed_gives_identical_metrics(blobs):
    train, train_labels, test, test_labels, synthetic, synthetic_labels = blobs
    first = evaluate_downstream(train, train_labels, test, test_labels, [3, 4], synthetic, synthetic_labels)
    second = evaluate_downstream(train, train_labels, test, test_labels, [3, 4], synthetic, synthetic_labels)
    assert first == second
    assert set(first) >= {"accuracy", "accuracy_std", "macro_f1", "macro_f1_std"}
    assert first["n_train_synthetic"] == 60 and first["n_train_real"] == 150


def test_without_resampling_matches_a_plain_logistic_regression(blobs):
    train, train_labels, test, test_labels, synthetic, synthetic_labels = blobs
    result = evaluate_downstream(
        train, train_labels, test, test_labels, [0, 1, 2], synthetic, synthetic_labels, resample="none", C=0.5
    )
    model = LogisticRegression(C=0.5, max_iter=1000).fit(
        np.concatenate([train, synthetic]), np.concatenate([train_labels, synthetic_labels])
    )
    predictions = model.predict(test)
    assert result["accuracy"] == pytest.approx(accuracy_score(test_labels, predictions))
    assert result["macro_f1"] == pytest.approx(f1_score(test_labels, predictions, average="macro"))
    assert result["accuracy_std"] == 0.0 and result["macro_f1_std"] == 0.0


def test_bootstrap_seeds_differ_and_the_real_draw_is_shared_across_variants(blobs):
    train, train_labels, test, test_labels, synthetic, synthetic_labels = blobs
    result = evaluate_downstream(
        train, train_labels, test, test_labels, list(range(6)), synthetic, synthetic_labels
    )
    assert result["accuracy_std"] > 0
    assert result["n_seeds"] == 6
    # The real part's bootstrap depends only on (seed, n_real): paired comparison between variants.
    np.testing.assert_array_equal(bootstrap_indices(5, 150, stream=0), bootstrap_indices(5, 150, stream=0))
    assert not np.array_equal(bootstrap_indices(5, 150, stream=0), bootstrap_indices(6, 150, stream=0))
    assert not np.array_equal(bootstrap_indices(5, 150, stream=0), bootstrap_indices(5, 150, stream=1))


def test_gold_without_synthetic_rows(blobs):
    train, train_labels, test, test_labels, *_ = blobs
    result = evaluate_downstream(train, train_labels, test, test_labels, [0], np.zeros((0, 10)), [])
    assert result["n_train_synthetic"] == 0 and result["accuracy_std"] == 0.0
    assert 0.34 < result["accuracy"] <= 1.0


def test_bad_inputs_raise_clear_errors(blobs):
    train, train_labels, test, test_labels, synthetic, synthetic_labels = blobs
    with pytest.raises(ValueError, match="not in the real training labels"):
        evaluate_downstream(train, train_labels, test, test_labels, [0], synthetic, ["zzz"] * 60)
    with pytest.raises(ValueError, match="seeds is empty"):
        evaluate_downstream(train, train_labels, test, test_labels, [])
    with pytest.raises(ValueError, match="train_labels has 3 labels"):
        evaluate_downstream(train, ["a", "b", "c"], test, test_labels, [0])
    with pytest.raises(ValueError, match="resample"):
        evaluate_downstream(train, train_labels, test, test_labels, [0], resample="jackknife")


def test_filter_synthetic_samples_drops_unknown_labels_and_empty_text():
    frame = pd.DataFrame(
        {"text": ["good", "", "bad", None, "meh"], "label": ["pos", "pos", "neg", "neg", "neutral"]}
    )
    with pytest.warns(UserWarning) as caught:
        kept = filter_synthetic_samples(frame, ["pos", "neg"], variant="simprompt")
    assert kept["text"].tolist() == ["good", "bad"]
    messages = " ".join(str(warning.message) for warning in caught)
    assert "empty text" in messages and "neutral" in messages
    with pytest.raises(ValueError, match="label"):
        filter_synthetic_samples(frame[["text"]], ["pos"])


def test_finetune_runs_a_few_steps_on_a_tiny_set(sst2_train):
    train = sst2_train.head(24)
    test = sst2_train.iloc[24:40]
    kwargs = dict(
        seeds=[0],
        synthetic_texts=["a wonderful film", "a dreadful film"],
        synthetic_labels=[train["label"].iloc[0], train["label"].iloc[1]],
        device="cpu",
        epochs=1,
        batch_size=8,
        max_steps=2,
        max_seq_length=32,
    )
    result = finetune_downstream(train["text"], train["label"], test["text"], test["label"], **kwargs)
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["macro_f1"] <= 1.0
    assert result["n_train_synthetic"] == 2 and result["n_seeds"] == 1 and result["accuracy_std"] == 0.0
    with pytest.raises(ValueError, match="not in the real training labels"):
        finetune_downstream(
            train["text"],
            train["label"],
            test["text"],
            test["label"],
            seeds=[0],
            synthetic_texts=["x"],
            synthetic_labels=["zzz"],
            device="cpu",
            max_steps=1,
        )

"""Wasserstein, MMD and vocabulary size against brute-force references (SynAlign sec. 4.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist, pdist

from synalign_kedro.core.metrics import (
    EmptyInputWarning,
    median_heuristic_bandwidth,
    mmd_rbf,
    tokenize_words,
    vocabulary_size,
    wasserstein_distance,
    wasserstein_method,
)


@pytest.fixture
def clouds():
    rng = np.random.default_rng(7)
    return rng.normal(size=(40, 6)), rng.normal(loc=0.4, size=(40, 6))


def test_exact_wasserstein_equals_optimal_assignment(clouds):
    # Equal-size uniform samples: an optimal coupling is a permutation (Birkhoff), so W1 = min-cost matching / n.
    real, synthetic = clouds
    cost = cdist(real, synthetic)
    rows, columns = linear_sum_assignment(cost)
    assert wasserstein_distance(real, synthetic) == pytest.approx(cost[rows, columns].mean(), rel=1e-9)


def test_weighted_wasserstein_equals_assignment_with_duplicated_rows(clouds):
    # Weights 2:1:...:1 on the synthetic side equal duplicating the first synthetic row.
    real, synthetic = clouds
    synthetic = synthetic[:39]
    weights = np.ones(39)
    weights[0] = 2.0
    duplicated = np.concatenate([synthetic[:1], synthetic], axis=0)
    cost = cdist(real, duplicated)
    rows, columns = linear_sum_assignment(cost)
    assert wasserstein_distance(real, synthetic, weights=weights) == pytest.approx(
        cost[rows, columns].mean(), rel=1e-9
    )


def test_wasserstein_is_symmetric_and_zero_on_identical_sets(clouds):
    real, synthetic = clouds
    assert wasserstein_distance(real, real) == pytest.approx(0.0, abs=1e-12)
    assert wasserstein_distance(real, synthetic) == pytest.approx(
        wasserstein_distance(synthetic, real), rel=1e-9
    )


def test_sliced_wasserstein_of_a_translation():
    # Translating a cloud by v: each projection shifts by <theta, v>, so SW2^2 = E[<theta, v>^2] = |v|^2 / d.
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    shift = np.full(8, 0.5)
    value = wasserstein_distance(real, real + shift, max_exact=100, n_projections=4000, seed=3)
    assert wasserstein_method(300, 300, max_exact=100) == "sliced"
    assert value == pytest.approx(np.linalg.norm(shift) / math.sqrt(8), rel=0.05)
    assert value == wasserstein_distance(real, real + shift, max_exact=100, n_projections=4000, seed=3)


def _brute_force_mmd2(x, y, sigma, weights=None):
    p = np.full(len(x), 1 / len(x))
    q = np.full(len(y), 1 / len(y)) if weights is None else np.asarray(weights) / np.sum(weights)

    def k(a, b):
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma**2))

    total = 0.0
    for i in range(len(x)):
        for j in range(len(x)):
            total += p[i] * p[j] * k(x[i], x[j])
    for i in range(len(y)):
        for j in range(len(y)):
            total += q[i] * q[j] * k(y[i], y[j])
    for i in range(len(x)):
        for j in range(len(y)):
            total -= 2 * p[i] * q[j] * k(x[i], y[j])
    return total


def test_mmd_matches_double_loop_with_fixed_bandwidth(clouds):
    real, synthetic = clouds
    expected = _brute_force_mmd2(real, synthetic[:25], sigma=1.7)
    assert mmd_rbf(real, synthetic[:25], bandwidth=1.7, device="cpu", chunk_size=7) == pytest.approx(
        expected, rel=1e-9
    )
    assert mmd_rbf(real, synthetic[:25], bandwidth=1.7, squared=False, device="cpu") == pytest.approx(
        math.sqrt(expected), rel=1e-9
    )


def test_mmd_matches_double_loop_with_median_bandwidth_and_weights(clouds):
    real, synthetic = clouds
    weights = np.random.default_rng(1).uniform(0.1, 3.0, size=len(synthetic))
    sigma = float(np.median(pdist(np.concatenate([real, synthetic]))))
    assert median_heuristic_bandwidth(real, synthetic, device="cpu") == pytest.approx(sigma, rel=1e-12)
    expected = _brute_force_mmd2(real, synthetic, sigma, weights)
    assert mmd_rbf(real, synthetic, weights=weights, device="cpu", chunk_size=16) == pytest.approx(
        expected, rel=1e-9
    )


def test_median_bandwidth_on_a_subsample_is_the_median_over_the_seeded_rows_of_x_and_y():
    # Above max_points the median is over a seeded subset of x U y: the same rows as drawing the indices from
    # the concatenation (what a reader of the docstring expects), found without copying all rows.
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 5)).astype(np.float32), rng.normal(loc=0.5, size=(200, 5)).astype(np.float32)
    pooled = np.concatenate([x, y]).astype(np.float64)
    chosen = np.random.default_rng(11).choice(len(pooled), size=120, replace=False)
    expected = float(np.median(pdist(pooled[chosen])))
    got = median_heuristic_bandwidth(x, y, max_points=120, seed=11, device="cpu")
    assert got == pytest.approx(expected, rel=1e-12)
    assert got != pytest.approx(float(np.median(pdist(pooled))), rel=1e-6)  # a subset, not all rows


def test_mmd_is_zero_on_identical_sets_and_grows_with_a_shift(clouds):
    real, _ = clouds
    assert mmd_rbf(real, real, device="cpu") == pytest.approx(0.0, abs=1e-12)
    small = mmd_rbf(real, real + 0.1, bandwidth=2.0, device="cpu")
    large = mmd_rbf(real, real + 1.0, bandwidth=2.0, device="cpu")
    assert 0 < small < large


def test_empty_sets_give_nan_with_a_warning(clouds):
    real, _ = clouds
    with pytest.warns(EmptyInputWarning):
        assert math.isnan(wasserstein_distance(real, np.zeros((0, 6))))
    with pytest.warns(EmptyInputWarning):
        assert math.isnan(mmd_rbf(np.zeros((0, 6)), real, device="cpu"))


def test_bad_inputs_raise_clear_errors(clouds):
    real, synthetic = clouds
    with pytest.raises(ValueError, match="dimension"):
        wasserstein_distance(real, synthetic[:, :3])
    with pytest.raises(ValueError, match="weights has 3 entries"):
        wasserstein_distance(real, synthetic, weights=[1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        mmd_rbf(real, synthetic, weights=-np.ones(len(synthetic)), device="cpu")
    with pytest.raises(ValueError, match="bandwidth"):
        mmd_rbf(real, synthetic, bandwidth="silverman", device="cpu")
    with pytest.raises(ValueError, match="2-D"):
        mmd_rbf(real[0], synthetic, device="cpu")


def test_vocabulary_size_counts_unique_lowercased_words():
    assert tokenize_words("Don't STOP, don't!") == ["don't", "stop", "don't"]
    # the, movie, a, 2, stars
    assert vocabulary_size(["The movie, the MOVIE!", "a movie; 2 stars", None, ""]) == 5
    assert vocabulary_size([]) == 0

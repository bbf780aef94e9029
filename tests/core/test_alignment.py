"""Tests of core.alignment (SynAlign sec. 3.4): invariants and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.spatial.distance import cdist

from synalign_kedro.core import alignment as core
from synalign_kedro.core.aligned_variants import (
    AlignmentSettings,
    build_variants,
    resample_indices,
    stratum_allocation,
)
from synalign_kedro.core.metrics import median_heuristic_bandwidth, mmd_rbf, wasserstein_distance


def brute_force_rbf_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Biased MMD^2 with k(a, b) = exp(-||a - b||^2 / (2 sigma^2)), from full kernel matrices."""

    def k(a, b):
        return np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma**2))

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


@pytest.fixture(scope="module")
def constructed_case():
    """Real data: a Gaussian blob. Pool: 60 real-like points from the same blob plus 40 off-distribution
    points (shifted by 3 in every coordinate)."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 8))
    real_like = rng.normal(size=(60, 8))
    off_distribution = rng.normal(size=(40, 8)) + 3.0
    pool = np.vstack([real_like, off_distribution])
    return real, pool, np.arange(60)


# ---------------------------------------------------------------- projections (eq. 11)


@pytest.mark.parametrize("dim,n_projections", [(384, 10), (384, 100), (384, 384), (16, 16)])
def test_projections_are_orthonormal(dim, n_projections):
    theta = core.orthonormal_projections(dim, n_projections, seed=3)
    assert theta.shape == (dim, n_projections)
    np.testing.assert_allclose(theta.T @ theta, np.eye(n_projections), atol=1e-10)


def test_projections_beyond_dim_are_orthonormal_blocks():
    theta = core.orthonormal_projections(10, 25, seed=1)
    assert theta.shape == (10, 25)
    for start in range(0, 25, 10):
        block = theta[:, start : start + 10]
        np.testing.assert_allclose(block.T @ block, np.eye(block.shape[1]), atol=1e-10)


def test_projections_are_seeded():
    np.testing.assert_array_equal(
        core.orthonormal_projections(20, 5, 7), core.orthonormal_projections(20, 5, 7)
    )
    assert not np.allclose(core.orthonormal_projections(20, 5, 7), core.orthonormal_projections(20, 5, 8))


def test_full_basis_objective_is_linear_mean_mmd(constructed_case):
    """With |Theta| = d, eq. 10 equals the plain mean-embedding MMD^2 (linear kernel) for any weights."""
    real, pool, _ = constructed_case
    weights = np.random.default_rng(1).dirichlet(np.ones(len(pool)))
    projection = core.make_projection("linear", 8, 8, seed=0)
    loss = core.alignment_loss(
        projection.mean_transform(real, "cpu"), projection.transform(pool, "cpu"), weights
    )
    brute_force = np.sum((real.mean(axis=0) - weights @ pool) ** 2)
    assert loss == pytest.approx(brute_force, rel=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_projections"):
        core.orthonormal_projections(5, 0)
    with pytest.raises(ValueError, match="projection must be one of"):
        core.make_projection("cosine", 5, 3)
    with pytest.raises(ValueError, match="bandwidth"):
        core.align_pool(np.zeros((3, 4)), np.ones((3, 4)), projection="rff", bandwidth="silverman")
    with pytest.raises(ValueError, match="dimension"):
        core.align_pool(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        core.align_pool(np.full((3, 4), np.nan), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="parametrisation"):
        core.fit_simplex_weights(np.zeros(3), np.zeros((4, 3)), parametrisation="lbfgs")


# ---------------------------------------------------------------- random Fourier features


def test_rff_mmd_approaches_exact_rbf_mmd(sst2_embeddings):
    """The squared distance of mean ORF features approaches the exact (brute-force) RBF MMD^2 as D grows."""
    x, y = sst2_embeddings[:150], sst2_embeddings[150:300] + 0.05 * np.sign(sst2_embeddings[:150])
    x, y = x.astype(np.float64), y.astype(np.float64)
    sigma = median_heuristic_bandwidth(x, y, device="cpu")
    exact = brute_force_rbf_mmd2(x, y, sigma)
    errors = []
    for n_features in (64, 512, 8192):
        estimates = []
        for seed in range(3):
            feature_map = core.make_projection("rff", x.shape[1], n_features, seed=seed, bandwidth=sigma)
            difference = feature_map.mean_transform(x, "cpu") - feature_map.mean_transform(y, "cpu")
            estimates.append(float((difference.double() ** 2).sum()))
        errors.append(np.mean(np.abs(np.array(estimates) - exact)))
    assert errors[2] < errors[0]
    assert errors[2] < 0.1 * exact


# ---------------------------------------------------------------- optimisation (eq. 10)


@pytest.mark.parametrize("parametrisation", ["softmax", "projected_gradient"])
@pytest.mark.parametrize("projection,n_projections", [("linear", 8), ("rff", 256)])
def test_weights_favour_real_like_points(constructed_case, parametrisation, projection, n_projections):
    real, pool, real_like = constructed_case
    result = core.align_pool(
        real,
        pool,
        projection=projection,
        n_projections=n_projections,
        n_iterations=500,
        parametrisation=parametrisation,
        seed=0,
        device="cpu",
    )
    weights = result.weights
    assert weights.shape == (len(pool),)
    assert (weights >= 0).all()
    assert weights.sum() == pytest.approx(1.0)
    assert weights[real_like].sum() > 0.9
    assert result.final_loss < 0.1 * result.initial_loss
    # lower MMD (evaluation metric, RBF kernel) and Wasserstein distance than uniform weights
    assert mmd_rbf(real, pool, weights=weights, device="cpu") < 0.5 * mmd_rbf(real, pool, device="cpu")
    assert wasserstein_distance(real, pool, weights=weights) < 0.8 * wasserstein_distance(real, pool)


def test_optimum_matches_slsqp_reference():
    """Eq. 10 is a convex quadratic on the simplex: gradient descent must reach the SLSQP optimum."""
    rng = np.random.default_rng(5)
    features = rng.normal(size=(12, 4))
    target = rng.dirichlet(np.ones(12)) @ features + 0.3 * rng.normal(size=4)  # outside the hull: optimum > 0

    def objective(w):
        return float(np.sum((target - w @ features) ** 2))

    reference = minimize(
        objective,
        np.full(12, 1 / 12),
        method="SLSQP",
        bounds=[(0, 1)] * 12,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert reference.success
    projected = core.fit_simplex_weights(
        target,
        features,
        n_iterations=20000,
        parametrisation="projected_gradient",
        tolerance=0.0,
        device="cpu",
    )
    softmax = core.fit_simplex_weights(target, features, n_iterations=3000, learning_rate=0.05, device="cpu")
    assert projected.final_loss == pytest.approx(reference.fun, rel=1e-4, abs=1e-8)
    assert softmax.final_loss == pytest.approx(reference.fun, rel=1e-2, abs=1e-6)
    # the weights need not be unique (12 weights, 4 features), the optimal weighted mean is
    np.testing.assert_allclose(projected.weights @ features, reference.x @ features, atol=1e-3)


def test_trace_records_losses_and_decreases(constructed_case):
    real, pool, _ = constructed_case
    projection = core.make_projection("linear", 8, 8, seed=0)
    result = core.fit_simplex_weights(
        projection.mean_transform(real, "cpu"),
        projection.transform(pool, "cpu"),
        n_iterations=50,
        tolerance=0.0,
        device="cpu",
    )
    assert len(result.losses) == 51 and result.iterations == 50
    uniform = np.full(len(pool), 1 / len(pool))
    assert result.initial_loss == pytest.approx(
        core.alignment_loss(
            projection.mean_transform(real, "cpu"), projection.transform(pool, "cpu"), uniform
        ),
        rel=1e-5,
    )
    assert result.final_loss < result.initial_loss


def test_per_label_alignment_keeps_real_class_prior(constructed_case):
    real, pool, real_like = constructed_case
    real_labels = np.where(np.arange(len(real)) < 450, "a", "b")  # prior 0.75 / 0.25
    synthetic_labels = np.where(np.arange(len(pool)) % 2 == 0, "a", "b")
    result = core.align_pool(
        real, pool, real_labels, synthetic_labels, per_label=True, n_projections=8, device="cpu"
    )
    assert set(result.traces) == {"a", "b"}
    assert result.weights.sum() == pytest.approx(1.0)
    assert result.weights[synthetic_labels == "a"].sum() == pytest.approx(0.75)
    assert result.weights[real_like].sum() > 0.9


def test_empty_pool_and_missing_labels_do_not_crash(constructed_case, caplog):
    real, pool, _ = constructed_case
    empty = core.align_pool(real, np.zeros((0, 8)), device="cpu")
    assert empty.weights.shape == (0,) and empty.traces == {}
    real_labels = np.where(np.arange(len(real)) < 300, "a", "b")
    synthetic_labels = np.array(["a"] * 50 + ["zzz"] * 50)  # label b absent, label zzz unknown
    with caplog.at_level("WARNING"):
        result = core.align_pool(
            real, pool, real_labels, synthetic_labels, per_label=True, n_projections=8, device="cpu"
        )
    assert "no synthetic sample" in caplog.text and "do not occur" in caplog.text
    assert result.weights[50:].sum() == 0
    assert result.weights.sum() == pytest.approx(1.0)


def test_effective_sample_size():
    assert core.effective_sample_size(np.full(10, 0.1)) == pytest.approx(10)
    assert core.effective_sample_size(np.array([1.0, 0, 0])) == pytest.approx(1)


# ---------------------------------------------------------------- resampling


def test_resampling_with_replacement_follows_weights():
    weights = np.array([0.7, 0.2, 0.1, 0.0])
    rows = resample_indices(weights, 20000, replace=True, seed=0)
    assert len(rows) == 20000 and 3 not in rows
    np.testing.assert_allclose(np.bincount(rows, minlength=4) / 20000, weights, atol=0.02)


def test_resampling_without_replacement_is_distinct_and_capped(caplog):
    weights = np.array([0.5, 0.3, 0.2, 0.0, 0.0])
    rows = resample_indices(weights, 2, replace=False, seed=0)
    assert len(np.unique(rows)) == 2
    with caplog.at_level("WARNING"):
        capped = resample_indices(weights, 5, replace=False, seed=0)
    assert sorted(capped) == [0, 1, 2] and "positive weight" in caplog.text


def test_stratified_resampling_allocates_by_weight_mass():
    weights = np.array([0.3, 0.3, 0.1, 0.3])
    strata = ["a", "a", "b", "b"]
    rows = resample_indices(weights, 10, replace=True, seed=0, strata=strata)
    assert np.isin(rows, [0, 1]).sum() == 6 and np.isin(rows, [2, 3]).sum() == 4


def test_an_allocation_fixes_the_rows_per_stratum():
    weights = np.array([0.3, 0.3, 0.1, 0.3])
    strata = ["a", "a", "b", "b"]
    assert stratum_allocation(weights, strata, 10) == {"a": 6, "b": 4}
    rows = resample_indices(np.ones(4), 10, replace=True, seed=0, strata=strata, allocation={"a": 3, "b": 7})
    assert np.isin(rows, [0, 1]).sum() == 3 and np.isin(rows, [2, 3]).sum() == 7
    assert len(resample_indices(np.ones(4), 10, seed=0, strata=strata, allocation={"b": 5})) == 5


def _weighted_pool(n_pos: int, n_neg: int, seed: int = 0):
    """A pool of ``n_pos`` + ``n_neg`` rows with non-uniform weights whose label masses (0.5 / 0.5, the real
    label shares of per-label alignment) differ from the pool's label shares."""
    from tests.pools import synthetic_pool

    labels = ["pos"] * n_pos + ["neg"] * n_neg
    pool = synthetic_pool([f"text {i}" for i in range(len(labels))], labels, "synalign")
    rng = np.random.default_rng(seed)
    raw = rng.dirichlet(np.full(len(labels), 0.3))
    is_pos = np.array(labels) == "pos"
    weight = np.where(is_pos, 0.5 * raw / raw[is_pos].sum(), 0.5 * raw / raw[~is_pos].sum())
    return pool, pool[["synthetic_id", "label"]].assign(weight=weight)


@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("n_resample", [11, 24])
def test_random_and_mmd_variants_differ_only_in_the_weights(replace, n_resample):
    """synalign_random and synalign_mmd: one rule (size, replace, rows per label), different rows."""
    pool, weights = _weighted_pool(45, 15)  # pool 75 % pos; weight mass 50 % pos
    settings = AlignmentSettings(n_resample=n_resample, replace=replace, per_label=True)
    every, random, mmd = build_variants(pool, weights, settings, seed=3)
    assert len(every) == 60
    assert len(random) == len(mmd) == n_resample
    counts_random, counts_mmd = random["label"].value_counts(), mmd["label"].value_counts()
    assert counts_random.to_dict() == counts_mmd.to_dict()
    assert abs(counts_mmd["pos"] - counts_mmd["neg"]) <= 1  # the weights' label mass, not the pool's 3:1
    assert sorted(random["synthetic_id"]) != sorted(mmd["synthetic_id"])
    assert set(random["synthetic_id"]) != set(mmd["synthetic_id"])
    if not replace:
        assert random["synthetic_id"].is_unique and mmd["synthetic_id"].is_unique
    # heavy weights are drawn more often by mmd than by the uniform rule
    heavy = set(weights.nlargest(10, "weight")["synthetic_id"])
    assert mmd["synthetic_id"].isin(heavy).sum() > random["synthetic_id"].isin(heavy).sum()


def test_global_alignment_draws_random_and_mmd_alike():
    pool, weights = _weighted_pool(30, 30, seed=1)
    settings = AlignmentSettings(n_resample=20, replace=True, per_label=False)
    _, random, mmd = build_variants(pool, weights, settings, seed=0)
    assert len(random) == len(mmd) == 20
    assert set(random["synthetic_id"]) != set(mmd["synthetic_id"])


def test_torch_device_auto_runs():
    result = core.fit_simplex_weights(torch.zeros(3), torch.eye(3), n_iterations=5, device="auto")
    assert result.weights.sum() == pytest.approx(1.0)


def test_rff_sees_spread_that_the_linear_kernel_cannot():
    """A mode-collapsed pool (right mean, tiny spread) next to well-spread points: only the RBF-kernel MMD
    (rff) tells them apart; the linear kernel compares means only, and both halves have the real mean."""
    rng = np.random.default_rng(2)
    real = rng.normal(size=(800, 6))
    collapsed = 0.05 * rng.normal(size=(50, 6))
    spread = rng.normal(size=(50, 6))
    pool = np.vstack([collapsed, spread])
    rff = core.align_pool(real, pool, projection="rff", n_projections=1024, n_iterations=500, device="cpu")
    assert rff.weights[50:].sum() > 0.8
    assert mmd_rbf(real, pool, weights=rff.weights, device="cpu") < mmd_rbf(real, pool, device="cpu")


def test_early_stop_on_relative_tolerance(constructed_case):
    real, pool, _ = constructed_case
    projection = core.make_projection("linear", 8, 8, seed=0)
    mu, features = projection.mean_transform(real, "cpu"), projection.transform(pool, "cpu")
    stopped = core.fit_simplex_weights(mu, features, n_iterations=5000, tolerance=1e-3, device="cpu")
    assert stopped.converged and stopped.iterations < 5000
    full = core.fit_simplex_weights(mu, features, n_iterations=300, tolerance=0.0, device="cpu")
    assert not full.converged and full.iterations == 300


def test_random_features_in_place_equal_the_formula_exactly():
    # phi(x) = sqrt(2/D) cos(x W + b), computed in place in chunks: the same floats as the plain expression
    rng = np.random.default_rng(5)
    x = rng.normal(size=(37, 6)).astype(np.float32)
    feature_map = core.make_projection("rff", 6, 20, seed=1, bandwidth=1.3)
    matrix = torch.as_tensor(feature_map.matrix, dtype=torch.float32)
    offsets = torch.as_tensor(feature_map.offsets, dtype=torch.float32)
    expected = math.sqrt(2.0 / 20) * torch.cos(torch.as_tensor(x) @ matrix + offsets)
    assert torch.equal(feature_map.transform(x, "cpu"), expected)  # one chunk
    # chunk by chunk (BLAS may round a product of other row blocks differently in the last bit)
    chunks = [math.sqrt(2.0 / 20) * torch.cos(torch.as_tensor(x[i : i + 8]) @ matrix + offsets) for i in range(0, 37, 8)]
    assert torch.equal(feature_map.transform(x, "cpu", chunk_size=8), torch.cat(chunks))
    mean = feature_map.mean_transform(x, "cpu", chunk_size=8)
    assert torch.allclose(mean, expected.double().mean(0).float(), rtol=0, atol=1e-7)

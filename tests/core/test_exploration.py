"""The GP uncertainty tracker (SynAlign sec. 3.2) against brute-force references, and its invariants."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from synalign_kedro.core.demonstrations import select_demonstrations
from synalign_kedro.core.exploration import (
    BandwidthWarning,
    UncertaintyTracker,
    check_bandwidth,
    kernel_from_distance,
    pairwise_distances,
    resolve_bandwidth,
)
from tests.core.gp_reference import posterior_variance_dense, refit_select

pytestmark = pytest.mark.usefixtures("single_thread")  # see tests/conftest.py


def clustered(n: int = 240, dim: int = 32, clusters: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    points = centres[rng.integers(clusters, size=n)] + 0.7 * rng.standard_normal((n, dim))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def eq5_literal(embeddings, selected, unselected, tau, kernel, noise):
    """Eq. 5 with plain numpy matrices, K(E_u,E_u) - K(E_u,E_s) (K(E_s,E_s) + noise I)^-1 K(E_s,E_u), diagonal
    (the `+ I` on K(E_u, E_u) left out, as documented in core.exploration)."""
    e = np.asarray(embeddings, dtype=np.float64)
    kernel_of = lambda a, b: kernel_from_distance(  # noqa: E731
        np.linalg.norm(e[a][:, None, :] - e[b][None, :, :], axis=2), tau, kernel
    )
    k_uu, k_us, k_ss = (
        kernel_of(unselected, unselected),
        kernel_of(unselected, selected),
        kernel_of(selected, selected),
    )
    sigma = k_uu - k_us @ np.linalg.inv(k_ss + noise * np.eye(len(selected))) @ k_us.T
    return np.diag(sigma)


# tolerance against dense float64 eq. 5, per precision (measured on these embeddings: ~3e-8, ~3e-8, ~1e-6)
PRECISION_ATOL = {"mixed": 1e-7, "float64": 1e-7, "float32": 1e-5}


@pytest.mark.parametrize("dtype", ["mixed", "float64", "float32"])
@pytest.mark.parametrize("kernel", ["exponential", "rbf"])
def test_variances_equal_dense_eq5_on_real_embeddings(sst2_embeddings, kernel, dtype):
    given = sst2_embeddings[:300]  # float32, as the encoder gives them
    assert given.dtype == np.float32
    embeddings = np.asarray(given, dtype=np.float64)  # the same values, for the float64 references
    tau = resolve_bandwidth("median", embeddings)
    tracker = UncertaintyTracker(given, tau=tau, kernel=kernel, noise=1e-6, device="cpu", dtype=dtype)
    result = tracker.run(k=4, threshold=0.0, max_rounds=8)
    assert len(result.rounds) == 8 and tracker.n_selected == 40
    selected = np.array(tracker.selected_order)
    unselected = np.setdiff1d(np.arange(len(embeddings)), selected)
    expected = eq5_literal(embeddings, selected, unselected, tau, kernel, 1e-6)
    np.testing.assert_allclose(tracker.variances()[unselected], expected, atol=1e-5, rtol=0)
    # and on every sample, selected ones included, against the dense reference used by refit_select
    dense = posterior_variance_dense(embeddings, selected, tau, kernel, 1e-6)
    np.testing.assert_allclose(tracker.variances(), dense, atol=PRECISION_ATOL[dtype], rtol=0)


@pytest.mark.parametrize("noise", [1e-6, 1e-2, 1.0])
def test_noise_parameter_matches_eq5_with_same_noise(noise):
    embeddings = clustered(150)
    # float64 throughout: this checks the algebra of the noise term to 1e-8 (mixed would first round the
    # float64 inputs to float32, ~2e-8 here)
    tracker = UncertaintyTracker(embeddings, tau=0.8, noise=noise, device="cpu", dtype="float64")
    tracker.run(k=3, threshold=-1.0, max_rounds=5)
    selected = np.array(tracker.selected_order)
    unselected = np.setdiff1d(np.arange(150), selected)
    expected = eq5_literal(embeddings, selected, unselected, 0.8, "exponential", noise)
    np.testing.assert_allclose(tracker.variances()[unselected], expected, atol=1e-8, rtol=0)


@pytest.mark.parametrize("dtype", ["mixed", "float64", "float32"])
@pytest.mark.parametrize("kernel", ["exponential", "rbf"])
def test_picks_equal_refit_per_round_selectors(sst2_embeddings, kernel, dtype):
    embeddings = np.asarray(sst2_embeddings[:300], dtype=np.float64)
    tau = resolve_bandwidth("median", embeddings)
    given = embeddings if dtype == "float64" else sst2_embeddings[:300]
    tracker = UncertaintyTracker(given, tau=tau, kernel=kernel, device="cpu", dtype=dtype)
    picks = [r.members for r in tracker.run(k=4, threshold=-1.0, max_rounds=10).rounds]
    assert picks == refit_select(embeddings, k=4, rounds=10, tau=tau, kernel=kernel, backend="numpy")
    assert picks == refit_select(embeddings, k=4, rounds=10, tau=tau, kernel=kernel, backend="sklearn")


def test_float32_storage_gives_same_picks_and_close_variances():
    embeddings = clustered(400)
    exact = UncertaintyTracker(embeddings, tau="median", device="cpu", dtype="float64")
    fast = UncertaintyTracker(embeddings.astype(np.float32), tau="median", device="cpu", dtype="float32")
    picks64 = [r.members for r in exact.run(k=4, threshold=-1.0, max_rounds=15).rounds]
    picks32 = [r.members for r in fast.run(k=4, threshold=-1.0, max_rounds=15).rounds]
    assert picks32 == picks64
    unselected = ~exact.selected_mask.numpy()
    np.testing.assert_allclose(fast.variances()[unselected], exact.variances()[unselected], atol=1e-4)
    assert fast.variances()[~unselected].max() < 1e-3  # float32 rounding: ~1e-4 instead of ~1e-6


def test_mixed_precision_is_exact_for_duplicates_and_close_pairs():
    """float32 products lose |a|^2 + |b|^2 - 2 a.b to cancellation for close pairs (a duplicate would sit at
    ~3e-4 instead of 0); the tracker recomputes those pairs in float64."""
    base = clustered(200, dim=64).astype(np.float32)
    rng = np.random.default_rng(7)
    close = base[:30] + np.float32(1e-3) * rng.standard_normal((30, 64)).astype(np.float32)
    embeddings = np.concatenate([base, base[:20], close])  # 20 exact duplicates, 30 near-duplicates
    reference = np.asarray(embeddings, dtype=np.float64)
    mixed = UncertaintyTracker(embeddings, tau="median", device="cpu", dtype="mixed")
    rows = [0, 5, 19, 200, 230, 249]
    distances = mixed.distances_to(rows).numpy()
    exact = np.linalg.norm(reference[rows][:, None, :] - reference[None, :, :], axis=2)
    np.testing.assert_allclose(distances, exact, rtol=1e-6, atol=1e-9)
    assert distances[0, 0] == 0.0 and distances[0, 200] == 0.0  # self and duplicate: exactly 0
    # and the whole selection agrees with float64 storage, duplicates being picked along the way
    exact_tracker = UncertaintyTracker(reference, tau=mixed.tau, device="cpu", dtype="float64")
    picks = [r.members for r in mixed.run(k=4, threshold=-1.0, max_rounds=20).rounds]
    assert picks == [r.members for r in exact_tracker.run(k=4, threshold=-1.0, max_rounds=20).rounds]
    # a duplicate of a picked sample is known exactly: variance ~noise (with the cancellation error it
    # would keep ~1 - (1 - 1e-4)^2 = 2e-4)
    variances = mixed.variances()
    picked_originals = [i for i in range(20) if i in set(mixed.selected_order)]
    assert picked_originals, "no duplicated sample was picked: choose more rounds"
    assert all(variances[200 + i] < 1e-5 for i in picked_originals)
    np.testing.assert_allclose(mixed.variances(), exact_tracker.variances(), atol=1e-7, rtol=0)


def test_next_pivot_lookahead_changes_nothing_but_the_passes(sst2_embeddings):
    """The lookahead only decides which row is computed ahead; picks and variances are those without it."""
    given = sst2_embeddings[:400]
    with_lookahead = UncertaintyTracker(given, tau="median", device="cpu")
    without = UncertaintyTracker(given, tau="median", device="cpu", lookahead=0)
    picks = [r.members for r in with_lookahead.run(k=4, threshold=-1.0, max_rounds=25).rounds]
    assert picks == [r.members for r in without.run(k=4, threshold=-1.0, max_rounds=25).rounds]
    np.testing.assert_allclose(with_lookahead.variances(), without.variances(), atol=1e-9, rtol=0)
    assert without.lookahead_hits == 0
    assert with_lookahead.lookahead_hits >= 20  # the guess is usually right (24 of 24 here when written)
    # a wrong guess is harmless: plant one and the next round still picks the argmax
    tracker = UncertaintyTracker(given, tau="median", device="cpu", lookahead=0)
    tracker.step(k=4)
    argmax = int(torch.argmax(tracker.variance.masked_fill(tracker.selected_mask, -np.inf)))
    wrong = next(i for i in range(len(given)) if i != argmax and not tracker.selected_mask[i])
    tracker._lookahead_row = (wrong, tracker.squared_distances_to([wrong])[0])
    assert tracker.step(k=4).pivot == argmax and tracker.lookahead_hits == 0


def test_invariants_picked_zero_monotone_and_pivot_is_argmax():
    embeddings = clustered(300)
    tracker = UncertaintyTracker(embeddings, tau="median", device="cpu")
    previous = tracker.variances()
    assert np.all(previous == 1.0)  # prior variance 1 (eq. 1)
    seen: set[int] = set()
    for round_number in range(12):
        before = tracker.variances()
        masked = np.where(tracker.selected_mask.numpy(), -np.inf, before)
        selection = tracker.step(k=4, round_number=round_number)
        assert selection.pivot == int(np.argmax(masked))
        assert selection.variance_at_selection == pytest.approx(masked.max())
        assert len(selection.members) == 5 and not seen & set(selection.members)
        seen |= set(selection.members)
        # the k neighbours are the k nearest unselected samples of the pivot
        distances = np.linalg.norm(embeddings - embeddings[selection.pivot], axis=1)
        candidates = [i for i in np.argsort(distances) if i not in seen - set(selection.members)]
        assert set(selection.members[1:]) == set(candidates[1:5])
        after = tracker.variances()
        assert np.all(after <= before + 1e-12)  # variances never increase
        assert np.all(after[list(seen)] < 1e-5)  # picked samples have variance ~0
        assert np.all(after >= 0)
    assert tracker.n_selected == 60


def test_stop_rule_threshold_and_max_rounds():
    embeddings = clustered(200)
    by_rounds = UncertaintyTracker(embeddings, tau="median", device="cpu").run(
        k=4, threshold=0.0, max_rounds=3
    )
    assert by_rounds.stop_reason == "max_rounds" and len(by_rounds.rounds) == 3

    tracker = UncertaintyTracker(embeddings, tau="median", device="cpu")
    result = tracker.run(k=4, threshold=0.3, max_rounds=None)
    assert result.stop_reason == "threshold"
    unselected = ~tracker.selected_mask.numpy()
    assert result.final_variance[unselected].max() <= 0.3
    # every round ran because the largest variance was still above sigma (Algorithm 1's while condition)
    assert all(r.variance_at_selection > 0.3 for r in result.rounds)
    assert result.rounds[-2].max_variance_after > 0.3

    small = clustered(12)
    exhausted = UncertaintyTracker(small, tau="median", device="cpu").run(
        k=4, threshold=-1.0, max_rounds=None
    )
    assert exhausted.stop_reason == "exhausted"
    assert sorted(exhausted.selected) == list(range(12))
    assert [len(r.members) for r in exhausted.rounds] == [5, 5, 2]


def test_per_label_trackers_only_pick_their_label():
    embeddings = clustered(300, seed=3)
    labels = np.array(["a", "b", "c"])[np.random.default_rng(1).integers(3, size=300)]
    batches, trace = select_demonstrations(embeddings, labels, k=3, max_rounds=4, threshold=0.0, device="cpu")
    assert len(batches) == 12 and [b.batch_id for b in batches] == list(range(12))
    assert [b.label for b in batches[:3]] == ["a", "b", "c"]  # rounds interleaved across labels
    for batch in batches:
        assert len(batch.rows) == 4
        assert set(labels[list(batch.rows)]) == {batch.label}
    rows = [i for b in batches for i in b.rows]
    assert len(rows) == len(set(rows))
    assert {t["tracker"] for t in trace} == {"a", "b", "c"}
    # each label's tracker equals a tracker run on that label's rows alone
    only_b = np.flatnonzero(labels == "b")
    tau = resolve_bandwidth("median", embeddings)
    alone = UncertaintyTracker(embeddings[only_b], tau=tau, device="cpu").run(
        k=3, threshold=0.0, max_rounds=4
    )
    assert [b.rows for b in batches if b.label == "b"] == [
        tuple(only_b[list(r.members)]) for r in alone.rounds
    ]


def test_global_tracker_labels_batches_by_pivot():
    embeddings = clustered(120)
    labels = ["x" if i % 2 else "y" for i in range(120)]
    batches, trace = select_demonstrations(
        embeddings, labels, k=4, max_rounds=3, per_label=False, device="cpu"
    )
    assert len(batches) == 3 and {t["tracker"] for t in trace} == {"__all__"}
    assert all(b.label == labels[b.rows[0]] for b in batches)


def test_badly_scaled_tau_warns():
    embeddings = clustered(100)
    assert check_bandwidth(embeddings, 1e-3) is not None
    assert check_bandwidth(embeddings, 1e4) is not None
    assert check_bandwidth(embeddings, resolve_bandwidth("median", embeddings)) is None
    with pytest.warns(BandwidthWarning, match="too small"):
        tracker = UncertaintyTracker(embeddings, tau=1e-3, device="cpu")
    with pytest.warns(BandwidthWarning, match="index order"):
        rounds = tracker.run(k=2, threshold=0.0, max_rounds=3).rounds
    assert [r.pivot for r in rounds] == [0, 3, 6] or rounds[1].pivot == min(
        set(range(100)) - set(rounds[0].members)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        UncertaintyTracker(embeddings, tau="median", device="cpu").run(k=2, max_rounds=3)


def test_bad_input_errors_name_the_problem():
    with pytest.raises(ValueError, match="2-D"):
        UncertaintyTracker(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        UncertaintyTracker(np.array([[0.0, np.nan], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="tau"):
        UncertaintyTracker(clustered(10), tau="mean")
    with pytest.raises(ValueError, match="tau"):
        UncertaintyTracker(clustered(10), tau=-1)
    with pytest.raises(ValueError, match="kernel"):
        UncertaintyTracker(clustered(10), kernel="cosine")
    with pytest.raises(ValueError, match="labels"):
        select_demonstrations(clustered(10), ["a"] * 9)
    with pytest.raises(ValueError, match="already selected"):
        tracker = UncertaintyTracker(clustered(10), tau=1.0, device="cpu")
        tracker.observe([1, 2])
        tracker.observe([2])


def test_pairwise_distances_match_norm():
    a, b = clustered(20), clustered(30, seed=1)
    expected = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    np.testing.assert_allclose(pairwise_distances(a, b), expected, atol=1e-7)

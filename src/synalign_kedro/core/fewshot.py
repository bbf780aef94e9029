"""The few-shot value benchmark's building blocks (issue 13; the regime of SynAlign's title, tables 1-4).

The real data of a set is cut into three disjoint parts by ingestion
(:func:`synalign_kedro.core.ingestion.ingest_parts`):

- what the method may see (``visible``): the ``shots`` per class drawn from it are all that the tracker,
  the generator, the aligner and the classifier ever train on;
- ``heldout``: real rows that nothing is fitted on, the reference of every distribution metric;
- ``real_test``: the classifier's test set (the shipped ``test.csv``).

Subsets for several ``shots`` are nested (the 8-shot subset of a seed is inside its 32-shot subset), so a
seed's comparison across shots changes only the amount of real data.

Distribution metrics (:func:`heldout_distances`) compare a set with ``heldout`` under a bandwidth that is
fixed once from held-out real data (the evaluation pipeline's
:func:`synalign_kedro.core.evaluation.heldout_bandwidth`) and shared by every variant, in any embedding
space; the classifier two-sample test (:func:`classifier_two_sample_auc`) adds a number with a fixed scale
(0.5: a classifier cannot tell the sets apart). Variants are drawn by one rule (:func:`draw_per_label`):
the same number per label, without replacement, with probability proportional to a weight; the random and
the MMD variant differ only in the weights (uniform, or eq. 10's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from .metrics import mmd_rbf, wasserstein_distance


class FewShotError(ValueError):
    """The real data cannot give the asked split (a class too small for the shots, say)."""


def nested_shots(visible: pd.DataFrame, shots: Sequence[int], seed: int, dataset: str = "") -> dict[int, pd.DataFrame]:
    """``{s: s rows per class}`` for each ``s`` in ``shots``; the subsets of one seed are nested (the first
    ``s`` rows of one seeded permutation per class)."""
    if not shots or min(shots) < 1:
        raise FewShotError(f"shots must be positive integers, got {list(shots)}")
    largest = max(shots)
    rng = np.random.default_rng(seed)
    orders: dict[str, np.ndarray] = {}
    for label, rows in sorted(visible.groupby(visible["label"].astype(str)).indices.items()):
        if len(rows) < largest:
            where = f" of {dataset}" if dataset else ""
            raise FewShotError(
                f"class {label!r}{where} has {len(rows)} rows the method may see, fewer than shots={largest}; "
                "use fewer shots or a smaller heldout_share"
            )
        orders[label] = rng.permutation(rows)
    return {
        s: visible.iloc[np.sort(np.concatenate([order[:s] for order in orders.values()]))].reset_index(drop=True)
        for s in shots
    }


def classifier_two_sample_auc(real: np.ndarray, synthetic: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Classifier two-sample test (Lopez-Paz & Oquab, 2017): the cross-validated ROC AUC of a logistic
    regression that tells ``real`` from ``synthetic`` rows. The larger set is subsampled to the smaller one's
    size so that 0.5 means indistinguishable and 1.0 fully separable. NaN when a set has fewer than 2 rows."""
    real, synthetic = np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)
    size = min(len(real), len(synthetic))
    if size < 2:
        return math.nan
    rng = np.random.default_rng(seed)
    real = real[rng.choice(len(real), size=size, replace=False)]
    synthetic = synthetic[rng.choice(len(synthetic), size=size, replace=False)]
    features = np.concatenate([real, synthetic])
    target = np.concatenate([np.zeros(size), np.ones(size)])
    splitter = StratifiedKFold(n_splits=min(folds, size), shuffle=True, random_state=seed)
    scores = np.zeros(len(target))
    for train, test in splitter.split(features, target):
        model = LogisticRegression(C=1.0, max_iter=2000).fit(features[train], target[train])
        scores[test] = model.predict_proba(features[test])[:, 1]
    return float(roc_auc_score(target, scores))


def heldout_distances(
    heldout: np.ndarray, other: np.ndarray, bandwidth: float, space: str, seed: int = 0
) -> dict[str, float]:
    """``heldout_{mmd,wasserstein,c2st_auc}_{space}``: MMD^2 (eq. 9) under the fixed ``bandwidth``, exact W1
    (tables 2-3) and the two-sample AUC between the held-out real rows and ``other``."""
    return {
        f"heldout_mmd_{space}": mmd_rbf(heldout, other, bandwidth=bandwidth, device="cpu", seed=seed),
        f"heldout_wasserstein_{space}": wasserstein_distance(heldout, other, max_exact=20_000, seed=seed),
        f"heldout_c2st_auc_{space}": classifier_two_sample_auc(heldout, other, seed=seed),
    }


def draw_per_label(weights: np.ndarray, labels: Sequence[str], per_label: int, seed: int) -> np.ndarray:
    """Row indices: ``per_label`` rows of each label (all of them when a label has fewer), drawn without
    replacement with probability proportional to ``weights`` inside the label (weights of a label that sum to
    0 count as uniform). Sorted. The one sampling rule of every synthetic variant."""
    weights = np.asarray(weights, dtype=np.float64)
    labels = np.asarray([str(label) for label in labels])
    if weights.shape != labels.shape:
        raise ValueError(f"{len(weights)} weights for {len(labels)} labels")
    if (weights < 0).any() or not np.isfinite(weights).all():
        raise ValueError("weights must be finite and non-negative")
    rng = np.random.default_rng(seed)
    drawn = []
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)
        mass = weights[rows]
        positive = int((mass > 0).sum())
        if mass.sum() <= 0:
            mass, positive = np.ones(len(rows)), len(rows)
        count = min(per_label, positive)
        drawn.append(rng.choice(rows, size=count, replace=False, p=mass / mass.sum()))
    return np.sort(np.concatenate(drawn)) if drawn else np.zeros(0, dtype=np.int64)


def paired_differences(
    table: pd.DataFrame, metric: str, baseline: str = "gold", confidence: float = 0.95
) -> pd.DataFrame:
    """Per data set x shots x method: the mean over seeds of ``metric(method) - metric(baseline)`` (paired:
    same data set, shots and seed, so the same real subset) with a Student-t confidence interval. An interval
    above 0 means the method beat the baseline on those seeds."""
    keys = ["dataset", "shots", "seed"]
    base = table[table["method"] == baseline].set_index(keys)[metric]
    rows = []
    for (dataset, shots, method), group in table[table["method"] != baseline].groupby(["dataset", "shots", "method"]):
        differences = (group.set_index(keys)[metric] - base.reindex(group.set_index(keys).index)).dropna()
        n = len(differences)
        mean = float(differences.mean()) if n else math.nan
        if n > 1:
            half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * differences.std(ddof=1) / math.sqrt(n))
        else:
            half = math.nan
        rows.append(
            {
                "dataset": dataset, "shots": int(shots), "method": method, "metric": metric, "baseline": baseline,
                "n_seeds": n, "mean_difference": mean, "ci_low": mean - half, "ci_high": mean + half,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half width of the Student-t interval) of ``values``; the half width is NaN below 2 values."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) == 1:
        return float(values[0]), math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)

"""Distribution and diversity metrics between real and synthetic data (SynAlign sec. 4.3, tables 2, 3, 5).

- :func:`wasserstein_distance`: the Wasserstein distance between the real and synthetic embedding clouds
  (paper sec. 4.3 "Distributional Alignment", tables 2 and 5). Computed with POT: exact earth mover's distance
  (``ot.emd2``, Euclidean ground cost, i.e. W1) while both sets hold at most ``max_exact`` points, sliced
  Wasserstein (``ot.sliced_wasserstein_distance``, SW2 over random directions) beyond that, because the exact
  solver needs an N x M cost matrix and super-quadratic time.
- :func:`mmd_rbf`: Maximum Mean Discrepancy with a Gaussian (RBF) kernel (paper eq. 9, the quantity the
  alignment step minimises through random projections, eq. 10), bandwidth by the median heuristic.
  Returns the **biased V-statistic MMD^2** by default (``squared=False`` gives its square root).
- :func:`vocabulary_size`: number of unique lower-cased word tokens (paper table 3).

Every function returns ``nan`` with a warning, instead of raising, when one side is empty: a weak LLM may
produce an empty synthetic set and the evaluation must still produce a table.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Iterable

import numpy as np
import ot
import torch

from .arrays import finite_matrix
from .device import resolve_device

logger = logging.getLogger(__name__)

# A word: letters/digits, optionally joined by apostrophes ("don't", "it's") -- lower-cased before matching.
WORD_PATTERN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


class EmptyInputWarning(UserWarning):
    """A metric got an empty set and returned ``nan``."""


def _normalised_weights(weights: np.ndarray | None, size: int, name: str = "weights") -> np.ndarray:
    """Uniform 1/size when ``weights`` is None; otherwise checked (1-D, length ``size``, >= 0, positive sum)
    and rescaled to sum to 1."""
    if weights is None:
        return np.full(size, 1.0 / size)
    values = np.asarray(weights, dtype=np.float64).reshape(-1)
    if values.shape[0] != size:
        raise ValueError(f"{name} has {values.shape[0]} entries but the synthetic set has {size} rows")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    total = values.sum()
    if total <= 0:
        raise ValueError(f"{name} sum to {total}; at least one weight must be positive")
    return values / total


def _check_pair(real: np.ndarray, synthetic: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Validate shapes; ``None`` (after a warning) when either side is empty (size 0, any shape)."""
    sizes = {"real": np.size(real), "synthetic": np.size(synthetic)}
    if 0 in sizes.values():
        warnings.warn(
            f"{metric}: empty input (real: {sizes['real']} values, synthetic: {sizes['synthetic']} values);"
            " returning nan",
            EmptyInputWarning,
            stacklevel=3,
        )
        return None
    real_values = finite_matrix("real", real)
    synthetic_values = finite_matrix("synthetic", synthetic)
    if real_values.shape[1] != synthetic_values.shape[1]:
        raise ValueError(
            f"{metric}: real has dimension {real_values.shape[1]} but synthetic has {synthetic_values.shape[1]}"
        )
    return real_values, synthetic_values


def wasserstein_distance(
    real: np.ndarray,
    synthetic: np.ndarray,
    max_exact: int = 5000,
    n_projections: int = 200,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> float:
    """Wasserstein distance between the empirical distributions of ``real`` (N, d) and ``synthetic`` (M, d).

    Paper sec. 4.3 / tables 2 and 5 ("Wasserstein distance between original and generated datasets").

    - Both N and M <= ``max_exact``: exact W1 = min over couplings P of sum_ij P_ij ||r_i - s_j||_2, solved by
      POT's network simplex (``ot.emd2``) with uniform mass on the real side and ``weights`` (default uniform)
      on the synthetic side.
    - Otherwise: sliced Wasserstein SW2 with ``n_projections`` random directions drawn from ``seed``
      (``ot.sliced_wasserstein_distance``). SW2 is a different (smaller) quantity than W1: compare values
      computed with the same method only (see :func:`wasserstein_method`).

    ``weights`` (length M, non-negative) weighs the synthetic samples, e.g. the learnt alignment weights; they
    are rescaled to sum to 1. Returns ``nan`` with an :class:`EmptyInputWarning` when either set is empty.
    """
    pair = _check_pair(real, synthetic, "wasserstein_distance")
    if pair is None:
        return math.nan
    real_values, synthetic_values = pair
    real_mass = np.full(real_values.shape[0], 1.0 / real_values.shape[0])
    synthetic_mass = _normalised_weights(weights, synthetic_values.shape[0])
    if wasserstein_method(real_values.shape[0], synthetic_values.shape[0], max_exact) == "exact":
        cost = ot.dist(real_values, synthetic_values, metric="euclidean")
        # numItermax: the default (100k) stops early on a few thousand points; the simplex needs more.
        return float(ot.emd2(real_mass, synthetic_mass, cost, numItermax=10_000_000))
    return float(
        ot.sliced_wasserstein_distance(
            real_values, synthetic_values, real_mass, synthetic_mass, n_projections=n_projections, seed=seed
        )
    )


def wasserstein_method(n_real: int, n_synthetic: int, max_exact: int = 5000) -> str:
    """``"exact"`` (W1 by ``ot.emd2``) or ``"sliced"`` (SW2): what :func:`wasserstein_distance` computes."""
    return "exact" if max(n_real, n_synthetic) <= max_exact else "sliced"


def median_heuristic_bandwidth(
    x: np.ndarray, y: np.ndarray, max_points: int = 2000, seed: int = 0, device: str = "auto"
) -> float:
    """Median of the pairwise Euclidean distances over the pooled set x U y (distinct pairs i < j).

    Above ``max_points`` pooled points the median is taken over a seeded random subset of that size
    (the median of ~2M distances is already stable). Returns 1.0 when all points coincide.
    """
    x, y = np.asarray(x), np.asarray(y)
    n_x, n_pooled = len(x), len(x) + len(y)
    if n_pooled > max_points:
        # Draw the row indices first and copy only the chosen rows: concatenating 120k x 384 rows in float64
        # before subsampling took 3 s at the alignment benchmark's scale. Same rows as before (the median
        # of pairwise distances does not depend on their order).
        chosen = np.sort(np.random.default_rng(seed).choice(n_pooled, size=max_points, replace=False))
        rows = [x[chosen[chosen < n_x]], y[chosen[chosen >= n_x] - n_x]]
        pooled = np.concatenate(rows, axis=0).astype(np.float64)
    else:
        pooled = np.concatenate([x, y], axis=0).astype(np.float64)
    if pooled.shape[0] < 2:
        return 1.0
    torch_device = resolve_device(device)
    points = torch.as_tensor(pooled, dtype=torch.float64, device=torch_device)
    distances = torch.cdist(points, points)
    upper = torch.triu_indices(points.shape[0], points.shape[0], offset=1, device=torch_device)
    values = distances[upper[0], upper[1]]
    # torch.median returns the lower middle value for an even count; use the usual (mean of the two) median.
    median = float(torch.quantile(values, 0.5)) if values.numel() <= 16_000_000 else float(values.median())
    return median if median > 0 else 1.0


def _weighted_kernel_sum(
    a: torch.Tensor, wa: torch.Tensor, b: torch.Tensor, wb: torch.Tensor, gamma: float, chunk_size: int
) -> torch.Tensor:
    """sum_ij wa_i wb_j exp(-gamma ||a_i - b_j||^2), computed block by block (never an |a| x |b| matrix
    larger than chunk_size x chunk_size)."""
    total = torch.zeros((), dtype=a.dtype, device=a.device)
    for start_a in range(0, a.shape[0], chunk_size):
        block_a = a[start_a : start_a + chunk_size]
        weights_a = wa[start_a : start_a + chunk_size]
        for start_b in range(0, b.shape[0], chunk_size):
            block_b = b[start_b : start_b + chunk_size]
            squared = torch.cdist(block_a, block_b).pow_(2)
            kernel = torch.exp(-gamma * squared)
            total = total + weights_a @ kernel @ wb[start_b : start_b + chunk_size]
    return total


def mmd_rbf(
    x: np.ndarray,
    y: np.ndarray,
    bandwidth: str | float = "median",
    weights: np.ndarray | None = None,
    squared: bool = True,
    device: str = "auto",
    chunk_size: int = 2048,
    seed: int = 0,
) -> float:
    """Maximum Mean Discrepancy between samples ``x`` (N, d; e.g. real) and ``y`` (M, d; e.g. synthetic) with
    the Gaussian kernel k(a, b) = exp(-||a - b||^2 / (2 sigma^2)) (paper eq. 9).

    Returns the biased V-statistic

        MMD^2 = sum_ij p_i p_j k(x_i, x_j) + sum_ij q_i q_j k(y_i, y_j) - 2 sum_ij p_i q_j k(x_i, y_j)

    with p uniform (1/N) and q = ``weights`` rescaled to sum to 1 (uniform 1/M when None); it is >= 0 and
    0 for identical samples. ``squared=False`` returns sqrt(max(MMD^2, 0)).

    ``bandwidth``: sigma as a float, or ``"median"`` for the median of the pooled pairwise distances
    (:func:`median_heuristic_bandwidth`). Computed in float64 with torch on ``device`` ("auto" = CUDA when
    available), block by block (``chunk_size``), so memory stays O(chunk_size^2).
    Returns ``nan`` with an :class:`EmptyInputWarning` when either set is empty.
    """
    pair = _check_pair(x, y, "mmd_rbf")
    if pair is None:
        return math.nan
    x_values, y_values = pair
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth must be 'median' or a positive number; got {bandwidth!r}")
        sigma = median_heuristic_bandwidth(x_values, y_values, seed=seed, device=device)
    else:
        sigma = float(bandwidth)
        if not sigma > 0:
            raise ValueError(f"bandwidth must be positive; got {bandwidth!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    gamma = 1.0 / (2.0 * sigma**2)
    torch_device = resolve_device(device)
    x_tensor = torch.as_tensor(x_values, dtype=torch.float64, device=torch_device)
    y_tensor = torch.as_tensor(y_values, dtype=torch.float64, device=torch_device)
    p = torch.full((x_values.shape[0],), 1.0 / x_values.shape[0], dtype=torch.float64, device=torch_device)
    q = torch.as_tensor(
        _normalised_weights(weights, y_values.shape[0]), dtype=torch.float64, device=torch_device
    )
    with torch.no_grad():
        value = (
            _weighted_kernel_sum(x_tensor, p, x_tensor, p, gamma, chunk_size)
            + _weighted_kernel_sum(y_tensor, q, y_tensor, q, gamma, chunk_size)
            - 2.0 * _weighted_kernel_sum(x_tensor, p, y_tensor, q, gamma, chunk_size)
        )
    mmd_squared = max(float(value), 0.0)  # rounding can push an exact 0 slightly below
    return mmd_squared if squared else math.sqrt(mmd_squared)


def tokenize_words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (runs of letters/digits, apostrophes kept inside words)."""
    return WORD_PATTERN.findall(str(text).lower())


def vocabulary_size(texts: Iterable[str]) -> int:
    """Number of unique lower-cased word tokens over ``texts`` (paper table 3, "vocabulary size").

    Tokens come from :func:`tokenize_words`; punctuation is not a word. An empty collection gives 0.
    """
    vocabulary: set[str] = set()
    for text in texts:
        if text is None or (isinstance(text, float) and math.isnan(text)):
            continue
        vocabulary.update(tokenize_words(text))
    return len(vocabulary)

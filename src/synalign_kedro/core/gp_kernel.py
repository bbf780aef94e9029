"""The GP kernel of exploration-aware sampling (SynAlign sec. 3.2, eq. 1-2) and its bandwidth ``tau``:
distances, the kernel as a function of distance, the median heuristic and a check for a degenerate ``tau``.
Used by the uncertainty tracker (:mod:`.exploration`) and the coverage samplers (:mod:`.coverage`)."""

from __future__ import annotations

import math

import numpy as np
import torch

KERNELS = ("exponential", "rbf")
"""``exponential``: eq. 2, ``exp(-||e_i - e_j|| / (2 tau))`` (the paper's kernel, a Laplacian / Matern-1/2
kernel); ``rbf``: the squared-distance RBF ``exp(-||e_i - e_j||^2 / (2 tau^2))``."""


class BandwidthWarning(UserWarning):
    """The kernel bandwidth ``tau`` is so badly scaled that the tracker degenerates."""


# --------------------------------------------------------------------------------------------- kernel
def _check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    return kernel


def kernel_from_distance(distance, tau: float, kernel: str = "exponential"):
    """kappa as a function of the Euclidean distance (works on numpy arrays and torch tensors).

    ``exponential`` is eq. 2 of the paper, ``exp(-d / (2 tau))``; ``rbf`` is ``exp(-d^2 / (2 tau^2))``.
    """
    _check_kernel(kernel)
    lib = torch if isinstance(distance, torch.Tensor) else np
    if kernel == "exponential":
        return lib.exp(-distance / (2.0 * tau))
    return lib.exp(-(distance * distance) / (2.0 * tau * tau))


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and ``b`` (float64; ``sqrt(max(0, |a|^2+|b|^2-2ab))``,
    which is ``sqrt(max(0, 2 - 2 a.b))`` for unit-norm embeddings)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0))


def _sample_pair_distances(embeddings: np.ndarray, sample_size: int, seed: int) -> np.ndarray:
    n = embeddings.shape[0]
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(n, size=min(n, sample_size), replace=False))
    sample = np.asarray(embeddings[index], dtype=np.float64)
    distances = pairwise_distances(sample, sample)
    return distances[np.triu_indices(len(index), k=1)]


def resolve_bandwidth(
    tau: float | str, embeddings: np.ndarray, sample_size: int = 1000, seed: int = 0
) -> float:
    """The bandwidth ``tau`` of eq. 2: a positive number, or ``"median"`` for the median pairwise Euclidean
    distance between (up to ``sample_size``, seeded) embeddings, the usual median heuristic."""
    if isinstance(tau, str):
        if tau.strip().lower() != "median":
            raise ValueError(f"tau must be a positive number or 'median', got {tau!r}")
        if embeddings.shape[0] < 2:
            raise ValueError("tau='median' needs at least 2 embeddings; give tau as a number")
        median = float(np.median(_sample_pair_distances(embeddings, sample_size, seed)))
        if not median > 0:
            raise ValueError("tau='median': the sampled embeddings are all identical (median distance 0)")
        return median
    try:
        value = float(tau)
    except (TypeError, ValueError):
        raise ValueError(f"tau must be a positive number or 'median', got {tau!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"tau must be a positive finite number, got {tau!r}")
    return value


def check_bandwidth(
    embeddings: np.ndarray, tau: float, kernel: str = "exponential", sample_size: int = 500, seed: int = 0
) -> str | None:
    """A message when ``tau`` is so badly scaled that the tracker degenerates, else None.

    Too small: every covariance is ~0, so a selection lowers no other variance, every variance stays 1 and
    argmax falls back to index order. Too large: every covariance is ~1, so the first batch drives every
    variance to ~0 and the tracker stops after one round.
    """
    if embeddings.shape[0] < 2:
        return None
    covariances = kernel_from_distance(_sample_pair_distances(embeddings, sample_size, seed), tau, kernel)
    if np.quantile(covariances, 0.99) < 1e-4:
        return (
            f"tau={tau:.4g} is too small for these embeddings ({kernel} kernel): 99% of covariances are "
            "below 1e-4, so selecting a sample lowers no other variance, every variance stays ~1 and argmax "
            "falls back to index order. Use tau='median' or a larger tau."
        )
    if np.quantile(covariances, 0.01) > 1 - 1e-4:
        return (
            f"tau={tau:.4g} is too large for these embeddings ({kernel} kernel): every covariance is ~1, so "
            "the first batch sets every variance to ~0 and exploration stops. Use tau='median' or a smaller tau."
        )
    return None

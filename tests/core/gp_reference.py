"""Brute-force references of the GP uncertainty tracker (SynAlign sec. 3.2, eq. 5 and Algorithm 1), for the
tests (tests/core/test_exploration.py) and the benchmark (benchmarks/bench_exploration.py). Slow on purpose:
they refit from scratch every round, so they are not part of the package."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from synalign_kedro.core.exploration import kernel_from_distance, pairwise_distances


def posterior_variance_dense(
    embeddings: np.ndarray,
    selected: Sequence[int],
    tau: float,
    kernel: str = "exponential",
    noise: float = 1e-6,
) -> np.ndarray:
    """Eq. 5 evaluated directly in float64 with dense matrices (reference for tests; O(N |S| d + |S|^3)):
    ``diag(K(E, E)) - diag(K(E, E_s) (K(E_s, E_s) + noise I)^{-1} K(E_s, E))`` for every sample (latent
    variance: without eq. 5's ``+ I`` on ``K(E_u, E_u)``, see the module docstring)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    selected = np.asarray(list(selected), dtype=np.int64)
    prior = np.ones(embeddings.shape[0])
    if selected.size == 0:
        return prior
    k_ss = kernel_from_distance(pairwise_distances(embeddings[selected], embeddings[selected]), tau, kernel)
    k_sa = kernel_from_distance(pairwise_distances(embeddings[selected], embeddings), tau, kernel)
    solved = np.linalg.solve(k_ss + noise * np.eye(len(selected)), k_sa)
    return prior - np.einsum("sn,sn->n", k_sa, solved)


def _sklearn_variance(embeddings: np.ndarray, selected: list[int], tau: float, kernel: str, noise: float):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, Matern

    # eq. 2 is Matern(nu=0.5) with length scale 2 tau; the squared-distance option is RBF(tau)
    gp_kernel = (
        Matern(length_scale=2.0 * tau, length_scale_bounds="fixed", nu=0.5)
        if kernel == "exponential"
        else RBF(length_scale=tau, length_scale_bounds="fixed")
    )
    if not selected:
        return np.ones(embeddings.shape[0])
    model = GaussianProcessRegressor(kernel=gp_kernel, alpha=noise, optimizer=None, normalize_y=False)
    model.fit(embeddings[selected], np.zeros(len(selected)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Predicted variances smaller than 0": clipped to 0, as we do
        _, std = model.predict(embeddings, return_std=True)
    return std**2


def refit_select(
    embeddings: np.ndarray,
    k: int,
    rounds: int,
    tau: float,
    kernel: str = "exponential",
    noise: float = 1e-6,
    backend: str = "numpy",
) -> list[tuple[int, ...]]:
    """Brute-force reference of Algorithm 1: refit the GP from scratch every round (``backend="numpy"``:
    :func:`posterior_variance_dense`; ``"sklearn"``: ``GaussianProcessRegressor`` with the same fixed kernel)
    and pick argmax variance + k nearest unselected neighbours (stable order). Returns each round's members
    (pivot first). Slow on purpose: for tests and the benchmark."""
    if backend not in ("numpy", "sklearn"):
        raise ValueError(f"backend must be 'numpy' or 'sklearn', got {backend!r}")
    embeddings = np.asarray(embeddings, dtype=np.float64)
    n = embeddings.shape[0]
    selected: list[int] = []
    is_selected = np.zeros(n, dtype=bool)
    picks: list[tuple[int, ...]] = []
    for _ in range(rounds):
        if is_selected.all():
            break
        if backend == "numpy":
            variance = posterior_variance_dense(embeddings, selected, tau, kernel, noise)
        else:
            variance = _sklearn_variance(embeddings, selected, tau, kernel, noise)
        variance = np.where(is_selected, -np.inf, variance)
        pivot = int(np.argmax(variance))
        distances = pairwise_distances(embeddings[pivot : pivot + 1], embeddings)[0]
        distances[is_selected] = np.inf
        distances[pivot] = np.inf
        n_neighbours = min(k, int((~is_selected).sum()) - 1)
        neighbours = np.argsort(distances, kind="stable")[:n_neighbours].tolist()
        members = (pivot, *neighbours)
        picks.append(members)
        selected.extend(members)
        is_selected[list(members)] = True
    return picks

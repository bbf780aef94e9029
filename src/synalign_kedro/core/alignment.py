"""Synthetic distribution alignment (SynAlign sec. 3.4, eq. 8-11): learn one sampling weight per synthetic
sample so that the weighted synthetic embeddings match the real ones in MMD, then resample by weight.

The paper's objective (eq. 10), with the sample weights kept on the probability simplex
(``w_j >= 0``, ``sum_j w_j = 1``, i.e. the paper's ``omega / M`` with ``mean(omega) = 1``)::

    L(w) = || Theta^T mean_i(e_i^real) - Theta^T sum_j w_j e_j^syn ||^2            (eq. 10)

where ``Theta`` holds |Theta| orthonormal random directions (eq. 11, Gram-Schmidt, here the QR
factorisation of a Gaussian matrix, which is Gram-Schmidt done stably). With a full orthonormal basis
(|Theta| = d) this is exactly the mean-embedding MMD^2 with a linear kernel; with |Theta| < d it is that
MMD measured in a random subspace.

Efficiency: ``Theta`` is linear, so the projected real mean is ``mean(E_real) @ Theta``, computed once in
O(N d); the projected synthetic matrix ``S = E_syn @ Theta`` (M x |Theta|) is computed once too. Each
gradient step then costs O(M |Theta|) whatever N is.

Beyond the paper, ``projection="rff"`` replaces the linear projections by orthogonal random Fourier features
(Yu et al. 2016, "Orthogonal Random Features"): ``phi(x) = sqrt(2/D) cos(W^T x + b)``. The same objective
then approximates the RBF-kernel MMD^2 (Gretton et al. 2012), which compares all moments of the two
distributions, not only their means.

Everything here is a plain library: numpy / torch in, numpy out, no Kedro.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .arrays import finite_matrix
from .device import resolve_device
from .metrics import median_heuristic_bandwidth

logger = logging.getLogger(__name__)

PROJECTION_KINDS = ("linear", "rff")
PARAMETRISATIONS = ("softmax", "projected_gradient")


# --------------------------------------------------------------------------------------------------------
# Projections (eq. 11) and random features
# --------------------------------------------------------------------------------------------------------


def _haar_orthogonal(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A (dim, dim) orthogonal matrix drawn uniformly (Haar): QR of a Gaussian matrix with the signs of R's
    diagonal folded into Q (Mezzadri 2007), i.e. the Gram-Schmidt orthonormalisation of eq. 11."""
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    gaussian = rng.standard_normal((dim, dim))
    # One BLAS thread: a (384, 384) QR takes ~20 ms on one core, but multi-threaded OpenBLAS on a busy
    # 2-core machine was measured at 1-4 s (threads spinning on each other).
    with threadpool_limits(limits=1, user_api="blas"):
        q, r = np.linalg.qr(gaussian)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def orthonormal_projections(dim: int, n_projections: int, seed: int = 0) -> np.ndarray:
    """The projection set Theta of eq. 11 as a (dim, n_projections) float64 matrix, one direction per column.

    For ``n_projections <= dim`` the columns are exactly orthonormal (``Theta^T Theta = I``). A vector space
    of dimension ``dim`` holds at most ``dim`` orthonormal directions, so for ``n_projections > dim`` (the
    paper sweeps |Theta| up to 1000 with 768-d BERT embeddings; ours are 384-d) the columns come in
    independent blocks of ``dim`` orthonormal directions, orthonormal within each block, as in orthogonal
    random features.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if n_projections < 1:
        raise ValueError(f"n_projections (|Theta|) must be >= 1, got {n_projections}")
    rng = np.random.default_rng(seed)
    blocks = []
    remaining = n_projections
    while remaining > 0:
        block = _haar_orthogonal(dim, rng)
        blocks.append(block[:, : min(dim, remaining)])
        remaining -= dim
    return np.concatenate(blocks, axis=1)


def orthogonal_random_features(
    dim: int, n_features: int, bandwidth: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies ``W`` (dim, n_features) and phases ``b`` (n_features,) of orthogonal random Fourier features
    for the RBF kernel ``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))`` (Yu et al. 2016, ORF).

    Each block of ``dim`` frequencies is a Haar-orthogonal matrix whose columns are rescaled by independent
    chi(dim)-distributed norms, so every column is marginally N(0, I / sigma^2) as in Rahimi & Recht's
    random features, but the columns within a block are orthogonal, which lowers the kernel
    approximation's variance. Phases are uniform on [0, 2 pi).
    """
    if bandwidth <= 0 or not math.isfinite(bandwidth):
        raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth}")
    rng = np.random.default_rng(seed)
    directions = orthonormal_projections(dim, n_features, seed=int(rng.integers(2**31)))
    norms = np.sqrt(rng.chisquare(dim, size=n_features))
    frequencies = directions * norms / bandwidth
    phases = rng.uniform(0.0, 2.0 * math.pi, size=n_features)
    return frequencies, phases


@dataclass(frozen=True)
class Projection:
    """A feature map applied to embeddings before the means are compared (the phi_theta family of eq. 9).

    ``kind="linear"``: ``x -> x @ matrix`` (eq. 10-11). ``kind="rff"``: ``x -> sqrt(2/D) cos(x @ matrix + offsets)``.
    """

    kind: str
    matrix: np.ndarray
    offsets: np.ndarray | None = None
    bandwidth: float | None = None

    @property
    def n_features(self) -> int:
        return int(self.matrix.shape[1])

    def transform(
        self,
        embeddings: np.ndarray | torch.Tensor,
        device: str | torch.device = "auto",
        chunk_size: int = 16384,
    ) -> torch.Tensor:
        """Features of every row, a float32 tensor (rows, n_features) on ``device``; computed in chunks."""
        torch_device = resolve_device(device)
        matrix = torch.as_tensor(self.matrix, dtype=torch.float32, device=torch_device)
        offsets = (
            None
            if self.offsets is None
            else torch.as_tensor(self.offsets, dtype=torch.float32, device=torch_device)
        )
        embeddings = torch.as_tensor(embeddings, dtype=torch.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.matrix.shape[0]:
            raise ValueError(
                f"embeddings must have shape (rows, {self.matrix.shape[0]}), got {tuple(embeddings.shape)}"
            )
        outputs = []
        for start in range(0, max(len(embeddings), 1), chunk_size):
            chunk = embeddings[start : start + chunk_size].to(torch_device)
            outputs.append(self._apply(chunk, matrix, offsets))
        return torch.cat(outputs) if len(embeddings) else outputs[0][:0]

    def mean_transform(
        self,
        embeddings: np.ndarray | torch.Tensor,
        device: str | torch.device = "auto",
        chunk_size: int = 16384,
    ) -> torch.Tensor:
        """Mean feature vector (n_features,) of the rows. For the linear map this is ``mean(x) @ matrix``
        (one O(N d) pass); for random features the rows are featurised in chunks and summed."""
        torch_device = resolve_device(device)
        embeddings = torch.as_tensor(embeddings, dtype=torch.float32)
        if len(embeddings) == 0:
            raise ValueError("cannot take the mean feature vector of zero rows")
        if self.kind == "linear":
            mean = embeddings.to(torch.float64).mean(dim=0)
            return (
                (mean @ torch.as_tensor(self.matrix, dtype=torch.float64)).to(torch.float32).to(torch_device)
            )
        total = torch.zeros(self.n_features, dtype=torch.float64, device=torch_device)
        matrix = torch.as_tensor(self.matrix, dtype=torch.float32, device=torch_device)
        offsets = torch.as_tensor(self.offsets, dtype=torch.float32, device=torch_device)
        for start in range(0, len(embeddings), chunk_size):
            chunk = embeddings[start : start + chunk_size].to(torch_device)
            total += self._apply(chunk, matrix, offsets).sum(dim=0, dtype=torch.float64)
        return (total / len(embeddings)).to(torch.float32)

    def _apply(self, chunk: torch.Tensor, matrix: torch.Tensor, offsets: torch.Tensor | None) -> torch.Tensor:
        projected = chunk @ matrix
        if self.kind == "linear":
            return projected
        # in place: the same float32 operations in the same order as sqrt(2/D) * cos(projected + offsets),
        # without three (chunk, D) temporaries (16384 x 2000 floats = 131 MB each)
        return projected.add_(offsets).cos_().mul_(math.sqrt(2.0 / self.n_features))


def make_projection(
    kind: str, dim: int, n_projections: int, seed: int = 0, bandwidth: float | None = None
) -> Projection:
    """Build the feature map: ``"linear"`` = Theta of eq. 11; ``"rff"`` = orthogonal random Fourier features
    of the RBF kernel with bandwidth ``bandwidth`` (required for ``"rff"``)."""
    if kind not in PROJECTION_KINDS:
        raise ValueError(f"projection must be one of {PROJECTION_KINDS}, got {kind!r}")
    if kind == "linear":
        return Projection("linear", orthonormal_projections(dim, n_projections, seed))
    if bandwidth is None:
        raise ValueError("projection 'rff' needs a bandwidth (a positive number)")
    frequencies, phases = orthogonal_random_features(dim, n_projections, float(bandwidth), seed)
    return Projection("rff", frequencies, phases, float(bandwidth))


# --------------------------------------------------------------------------------------------------------
# Optimisation of eq. 10 on the simplex
# --------------------------------------------------------------------------------------------------------


@dataclass
class AlignmentResult:
    """Learnt weights (non-negative, sum 1) and the optimisation trace (loss before each step, then final)."""

    weights: np.ndarray
    losses: list[float] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False

    @property
    def initial_loss(self) -> float:
        return float(self.losses[0]) if self.losses else float("nan")

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1]) if self.losses else float("nan")


def alignment_loss(
    real_mean_features: np.ndarray | torch.Tensor,
    synthetic_features: np.ndarray | torch.Tensor,
    weights: np.ndarray | torch.Tensor,
) -> float:
    """Eq. 10 for given weights: ``|| mu_real - w^T S ||^2``."""
    mu = torch.as_tensor(real_mean_features, dtype=torch.float64).cpu()
    features = torch.as_tensor(synthetic_features, dtype=torch.float64).cpu()
    w = torch.as_tensor(weights, dtype=torch.float64).cpu()
    return float(((mu - w @ features) ** 2).sum())


def fit_simplex_weights(
    real_mean_features: np.ndarray | torch.Tensor,
    synthetic_features: np.ndarray | torch.Tensor,
    n_iterations: int = 500,
    learning_rate: float = 0.05,
    parametrisation: str = "softmax",
    tolerance: float = 1e-6,
    device: str | torch.device = "auto",
) -> AlignmentResult:
    """Minimise eq. 10 over the probability simplex by gradient descent, starting from uniform weights.

    - ``parametrisation="softmax"``: ``w = softmax(z)``, Adam on the logits ``z`` (learning rate
      ``learning_rate``); weights stay strictly positive, the paper's "gradient descent" on free parameters.
    - ``parametrisation="projected_gradient"``: gradient step on ``w`` with step ``1 / L`` (``L = 2
      lambda_max(S S^T)``, the gradient's Lipschitz constant; ``learning_rate`` is ignored), then Euclidean
      projection onto the simplex (``ot.utils.proj_simplex``). Converges to the exact optimum of this convex
      quadratic; weights can be exactly 0.

    Stops early when, over the last 10 steps, the loss improved by less than ``tolerance`` times its value
    (relative; 0 runs every step) or reached 0. ``losses[k]`` is
    the loss before step k; the last entry is the final loss.
    """
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(f"parametrisation must be one of {PARAMETRISATIONS}, got {parametrisation!r}")
    if n_iterations < 0:
        raise ValueError(f"n_iterations must be >= 0, got {n_iterations}")
    torch_device = resolve_device(device)
    mu = torch.as_tensor(real_mean_features).to(torch_device, torch.float32)
    features = torch.as_tensor(synthetic_features).to(torch_device, torch.float32)
    if features.ndim != 2 or mu.ndim != 1 or features.shape[1] != mu.shape[0]:
        raise ValueError(
            f"synthetic_features must be (M, P) and real_mean_features (P,), got {tuple(features.shape)} "
            f"and {tuple(mu.shape)}"
        )
    n_samples = features.shape[0]
    if n_samples == 0:
        raise ValueError("cannot fit alignment weights for an empty synthetic pool")
    if not (torch.isfinite(features).all() and torch.isfinite(mu).all()):
        raise ValueError("synthetic_features / real_mean_features contain NaN or inf")
    with _fast_cpu_settings(torch_device, n_samples * mu.shape[0]):
        return _descend(mu, features, n_iterations, learning_rate, parametrisation, tolerance)


# Below this many synthetic-feature entries (M x |Theta|) the CPU optimisation runs on one torch thread: each
# step is a few small kernels, and intra-op threads cost more than they give. Measured at M = 20,000,
# |Theta| = 100 on a busy 2-core machine: 2.7 CPU-s for 500 steps on one thread vs 8.4 CPU-s on two.
SINGLE_THREAD_MAX_ENTRIES = 1 << 24


@contextmanager
def _fast_cpu_settings(device: torch.device, entries: int):
    """On the CPU: flush subnormal floats to zero, and one torch thread for small problems; both restored.

    Subnormals: the softmax gradients and Adam's second moments of strongly down-weighted samples underflow
    into subnormal float32 numbers, which x86 CPUs process ~40x slower (measured: 3.1 CPU-s for 500 steps at
    M = 20,000 in float64, 0.67 CPU-s in float32 with flushing, same final loss). Flushing them to 0 changes
    nothing that matters here. torch has no getter for the flag: it is restored to torch's default (off).
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    if entries <= SINGLE_THREAD_MAX_ENTRIES:
        torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(previous)


def _descend(
    mu: torch.Tensor,
    features: torch.Tensor,
    n_iterations: int,
    learning_rate: float,
    parametrisation: str,
    tolerance: float,
) -> AlignmentResult:
    torch_device, n_samples = features.device, features.shape[0]

    def loss_of(w: torch.Tensor) -> torch.Tensor:
        return ((mu - w @ features) ** 2).sum()

    losses: list[float] = []
    converged = False
    if parametrisation == "softmax":
        logits = torch.zeros(n_samples, device=torch_device, requires_grad=True)
        optimiser = torch.optim.Adam([logits], lr=learning_rate)
        for _ in range(n_iterations):
            optimiser.zero_grad()
            loss = loss_of(torch.softmax(logits, dim=0))
            loss.backward()
            losses.append(float(loss.detach()))
            if _stalled(losses, tolerance):
                converged = True
                break
            optimiser.step()
        with torch.no_grad():
            weights = torch.softmax(logits, dim=0)
    else:
        from ot.utils import proj_simplex

        weights = torch.full((n_samples,), 1.0 / n_samples, device=torch_device)
        gram_top = torch.linalg.matrix_norm(features.double(), ord=2) ** 2  # lambda_max(S S^T)
        step_size = float(1.0 / max(2.0 * float(gram_top), 1e-12))
        for _ in range(n_iterations):
            residual = mu - weights @ features
            losses.append(float((residual**2).sum()))
            if _stalled(losses, tolerance):
                converged = True
                break
            gradient = -2.0 * (features @ residual)
            weights = proj_simplex(weights - step_size * gradient)
    with torch.no_grad():
        losses.append(float(loss_of(weights)))
    weights_np = weights.detach().double().cpu().numpy()
    weights_np = np.clip(weights_np, 0.0, None)
    weights_np /= weights_np.sum()
    return AlignmentResult(weights=weights_np, losses=losses, iterations=len(losses) - 1, converged=converged)


def _stalled(losses: Sequence[float], tolerance: float, window: int = 10) -> bool:
    if len(losses) <= window:
        return False
    previous = losses[-window - 1]
    return previous == 0.0 or (previous - losses[-1]) < tolerance * abs(previous)


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``1 / sum w^2`` of normalised weights (M for uniform, 1 for a point mass)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or w.sum() <= 0:
        return 0.0
    w = w / w.sum()
    return float(1.0 / np.sum(w**2))


# --------------------------------------------------------------------------------------------------------
# The whole alignment step: features, optimisation, optionally per label
# --------------------------------------------------------------------------------------------------------


@dataclass
class PoolAlignment:
    """Weights over the whole pool (sum 1) plus one optimisation trace per aligned group
    (``"__all__"`` when aligning globally, else the label)."""

    weights: np.ndarray
    traces: dict[str, AlignmentResult]
    projection_kind: str
    n_projections: int

    @property
    def initial_loss(self) -> float:
        return _mean_group_loss(self, "initial_loss")

    @property
    def final_loss(self) -> float:
        return _mean_group_loss(self, "final_loss")

    @property
    def iterations(self) -> int:
        return max((t.iterations for t in self.traces.values()), default=0)


def _mean_group_loss(alignment: PoolAlignment, attribute: str) -> float:
    if not alignment.traces:
        return float("nan")
    return float(np.mean([getattr(trace, attribute) for trace in alignment.traces.values()]))


def align_pool(
    real_embeddings: np.ndarray,
    synthetic_embeddings: np.ndarray,
    real_labels: Sequence[str] | None = None,
    synthetic_labels: Sequence[str] | None = None,
    per_label: bool = False,
    projection: str = "linear",
    n_projections: int = 100,
    bandwidth: float | str | None = "median",
    n_iterations: int = 500,
    learning_rate: float = 0.05,
    parametrisation: str = "softmax",
    tolerance: float = 1e-6,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> PoolAlignment:
    """Learn alignment weights for ``synthetic_embeddings`` (M, d) against ``real_embeddings`` (N, d).

    ``projection="rff"`` uses ``bandwidth`` (a number, or ``"median"``: the median pairwise distance of the
    pooled real and synthetic rows, ``core.metrics.median_heuristic_bandwidth``).

    Global (``per_label=False``): one problem, the whole pool against all real rows (the paper).
    ``per_label=True``: each label's synthetic rows are aligned to that label's real rows; the label's
    weights are then scaled by the label's share of the real rows (over the labels that have synthetic rows),
    so the pooled weights sum to 1 and reproduce the real class prior. Synthetic labels absent from the real
    data get weight 0; real labels with no synthetic row are skipped; both with a warning.
    """
    real = finite_matrix("real_embeddings", real_embeddings, np.float32)
    synthetic = finite_matrix("synthetic_embeddings", synthetic_embeddings, np.float32)
    if real.shape[1] != synthetic.shape[1]:
        raise ValueError(
            f"real_embeddings have dimension {real.shape[1]} but synthetic_embeddings {synthetic.shape[1]}"
        )
    if len(real) == 0:
        raise ValueError("real_embeddings is empty: there is nothing to align to")
    n_synthetic = len(synthetic)
    weights = np.zeros(n_synthetic, dtype=np.float64)
    if n_synthetic == 0:
        logger.warning("The synthetic pool is empty: no alignment weights to learn")
        return PoolAlignment(weights, {}, projection, n_projections)
    sigma = None
    if projection == "rff":
        if bandwidth is None or bandwidth == "median":
            # the evaluation's MMD bandwidth rule (median pairwise distance of real U synthetic), so the
            # alignment minimises an approximation of the MMD the evaluation reports
            sigma = median_heuristic_bandwidth(real, synthetic, seed=seed, device=device)
        elif isinstance(bandwidth, str):
            raise ValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}")
        else:
            sigma = float(bandwidth)
    feature_map = make_projection(projection, real.shape[1], n_projections, seed, sigma)
    fit = dict(
        n_iterations=n_iterations,
        learning_rate=learning_rate,
        parametrisation=parametrisation,
        tolerance=tolerance,
        device=device,
    )
    if not per_label:
        result = fit_simplex_weights(
            feature_map.mean_transform(real, device), feature_map.transform(synthetic, device), **fit
        )
        return PoolAlignment(result.weights, {"__all__": result}, projection, n_projections)

    if real_labels is None or synthetic_labels is None:
        raise ValueError("per_label alignment needs real_labels and synthetic_labels")
    real_labels = np.asarray([str(label) for label in real_labels])
    synthetic_labels = np.asarray([str(label) for label in synthetic_labels])
    if len(real_labels) != len(real) or len(synthetic_labels) != n_synthetic:
        raise ValueError(
            f"labels must be row-aligned with embeddings: {len(real_labels)} real labels for {len(real)} rows, "
            f"{len(synthetic_labels)} synthetic labels for {n_synthetic} rows"
        )
    real_set, synthetic_set = set(real_labels.tolist()), set(synthetic_labels.tolist())
    unknown = sorted(synthetic_set - real_set)
    if unknown:
        logger.warning(
            "Synthetic labels %s do not occur in the real data: their samples get weight 0", unknown
        )
    missing = sorted(real_set - synthetic_set)
    if missing:
        logger.warning("Real labels %s have no synthetic sample: they are left out of the alignment", missing)
    shared = sorted(real_set & synthetic_set)
    if not shared:
        logger.warning("No label is shared by the real data and the synthetic pool: all weights are 0")
        return PoolAlignment(weights, {}, projection, n_projections)
    real_counts = {label: int((real_labels == label).sum()) for label in shared}
    total_real = sum(real_counts.values())
    traces: dict[str, AlignmentResult] = {}
    for label in shared:
        synthetic_rows = np.flatnonzero(synthetic_labels == label)
        result = fit_simplex_weights(
            feature_map.mean_transform(real[real_labels == label], device),
            feature_map.transform(synthetic[synthetic_rows], device),
            **fit,
        )
        weights[synthetic_rows] = result.weights * real_counts[label] / total_real
        traces[label] = result
    return PoolAlignment(weights / weights.sum(), traces, projection, n_projections)

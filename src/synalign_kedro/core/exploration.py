"""Exploration-aware sampling: the Gaussian-process uncertainty tracker of SynAlign (Ren et al. 2025).

Paper, sec. 3.2 and Algorithm 1: every real sample ``e_i`` gets a GP prior with mean 0, variance 1 and
covariance ``kappa(e_i, e_j)`` (eq. 1). Each round the sample with the largest posterior variance and its
``k`` nearest neighbours become one demonstration batch (eq. 3); they are treated as observed (value 0)
and the posterior variance of every other sample is updated (eq. 4-5). Rounds repeat while the largest
variance is above a threshold ``sigma``.

How it is computed here (exact, not an approximation)
-----------------------------------------------------
Only the diagonal of the posterior covariance is used, and greedy max-variance selection is a pivoted
Cholesky factorisation of the kernel matrix. With ``L L^T = K(E_s, E_s) + noise * I`` and
``F = L^{-1} K(E_s, E_all)`` (|S| x N), the posterior variance of every sample is ``1 - sum_rows(F**2)``.
When a batch ``B`` is added, ``F`` grows by ``|B|`` rows (a blocked Cholesky step):

    C     = K(E_B, E_all) - F[:, B]^T F                  (|B| x N)
    L_B   = chol(C[:, B] + noise * I)                     (|B| x |B|)
    F_new = L_B^{-1} C ;   variance -= sum_rows(F_new**2)

so one round costs O(N * |S| * |B|) and memory is O(N * |S|): no N x N matrix is ever formed and no GP is
refitted. By default the embeddings are multiplied in float32 and everything else is float64 (``dtype``,
see :data:`PRECISIONS`), and each round computes the likely next pivot's distances in the same pass as its
neighbours' kernel rows (:meth:`UncertaintyTracker._likely_next_pivot`); docs/exploration.md has the
measurements. ``tests/core/gp_reference.py`` holds the brute-force references the tests and the benchmark
compare against (eq. 5 evaluated directly, and a refit-per-round selector, numpy or scikit-learn).

Deviation from eq. 5 (on purpose)
---------------------------------
Eq. 5 adds the identity to both ``K(E_s, E_s)`` (observation noise of variance 1) and ``K(E_u, E_u)``. Taken
literally a selected sample keeps variance >= 1, which contradicts sec. 3.2 step 2 ("their uncertainty is
reduced to 0") and Algorithm 1's stop rule ``max U <= sigma`` could never be met. We therefore report the
latent posterior variance (no ``+ I`` on ``K(E_u, E_u)``) and use a ``noise`` parameter for the term that
eq. 5 adds to ``K(E_s, E_s)``: default ``1e-6`` (a jitter that keeps the Cholesky factor well defined), so
that picked samples end with variance ~0. ``noise=1.0`` reproduces eq. 5's observation noise.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .device import resolve_device
from .gp_kernel import (  # noqa: F401  (re-exported: the tracker's kernel and bandwidth)
    KERNELS,
    BandwidthWarning,
    _check_kernel,
    _sample_pair_distances,
    check_bandwidth,
    kernel_from_distance,
    pairwise_distances,
    resolve_bandwidth,
)

logger = logging.getLogger(__name__)

PRECISIONS = {
    # name: (storage of the N x d embeddings, storage of the |S| x N factor F)
    "float64": (torch.float64, torch.float64),
    "mixed": (torch.float32, torch.float64),
    "float32": (torch.float32, torch.float32),
}
"""``dtype`` values of :class:`UncertaintyTracker`. ``mixed`` (the default) streams the embeddings in float32,
the precision sentence encoders produce them in, and keeps the factor, the Schur complements and the
variances in float64."""

_NORM_BLOCK_ROWS = 256  # rows per block of _squared_norms_float64: a 786 kB buffer that stays in cache

REFINE_RELATIVE_SQUARED_DISTANCE = 0.25
"""With float32 embeddings, a squared distance below this fraction of ``|a|^2 + |b|^2`` (for unit vectors:
a distance below ~0.7) is recomputed in float64 as ``sum((a - b)^2)``. ``|a|^2 + |b|^2 - 2 a.b`` loses
the float32 rounding error of ``a.b`` (~1e-7) to cancellation, which the square root amplifies for close
pairs (a duplicate would get distance ~3e-4 instead of 0); far pairs keep a relative error of ~1e-7."""


# --------------------------------------------------------------------------------------------- tracker
def _safe_cholesky(matrix: torch.Tensor, noise: float, tries: int = 6) -> torch.Tensor:
    """Lower Cholesky factor of a small symmetric matrix; when rounding makes it (numerically) indefinite,
    retry with a growing diagonal jitter (1e-8 ... 1e-3, like GPyTorch's psd_safe_cholesky) and warn."""
    chol, info = torch.linalg.cholesky_ex(matrix)
    if int(info) == 0:
        return chol
    jitter = max(noise, 1e-8)
    for _ in range(tries):
        jittered = matrix.clone()
        jittered.diagonal().add_(jitter)
        chol, info = torch.linalg.cholesky_ex(jittered)
        if int(info) == 0:
            logger.warning("Cholesky update needed an extra jitter of %.1e (near-duplicate samples?)", jitter)
            return chol
        jitter *= 10.0
    raise FloatingPointError(
        "the Cholesky update failed even with extra jitter (selected samples are numerically collinear); "
        f"increase `noise` (now {noise:g}) or use dtype='float64'"
    )


def _squared_norms_float64(embeddings: torch.Tensor) -> torch.Tensor:
    """``|e|^2`` of every row in float64, through one small reused float64 buffer: no N x d float64 copy of
    float32 storage (``vector_norm(dtype=float64)`` made one: +250 MB peak at 100k x 384, 6x slower)."""
    n, dim = embeddings.shape
    squared_norms = torch.empty(n, dtype=torch.float64, device=embeddings.device)
    buffer = torch.empty((min(n, _NORM_BLOCK_ROWS), dim), dtype=torch.float64, device=embeddings.device)
    for start in range(0, n, _NORM_BLOCK_ROWS):
        stop = min(n, start + _NORM_BLOCK_ROWS)
        block = buffer[: stop - start]
        block.copy_(embeddings[start:stop])
        torch.sum(block.square_(), dim=1, out=squared_norms[start:stop])
    return squared_norms


def _small_times_wide(small: torch.Tensor, wide: torch.Tensor) -> torch.Tensor:
    """``small @ wide`` for a (b, r) by (r, N) product with b ~ 5 and N large: C = F_B^T F of the update.

    On the CPU this goes through numpy's BLAS (OpenBLAS) on zero-copy views: for this shape torch's MKL
    kernel streamed the factor at about half the speed (20k columns, r = 5..200, float64: 130 ms against
    62 ms over 40 rounds on one core, 74 against 38 ms on two), and this product is a third of a round."""
    if small.device.type != "cpu" or not wide.is_contiguous():
        return small @ wide
    return torch.from_numpy(np.matmul(small.numpy(), wide.numpy()))


def _one_blas_thread_beside_torch_threads(device: torch.device):
    """numpy's BLAS limited to one thread while torch runs more than one, on the CPU.

    Each round alternates torch (MKL, OpenMP) and numpy (OpenBLAS, see :func:`_small_times_wide`) products.
    With two threads in both pools on two cores, the idle pool's threads spin-wait on the cores the other
    needs: 20k x 384, 40 rounds took 0.72-0.95 s, against 0.35-0.44 s with either pool at one thread."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class SelectionRound:
    """One round of Algorithm 1: the pivot (argmax variance), its batch (pivot first, then its k nearest
    unselected neighbours by distance), the pivot's variance when it was picked, and the largest variance
    among unselected samples after the update (NaN when none is left)."""

    round: int
    pivot: int
    members: tuple[int, ...]
    variance_at_selection: float
    max_variance_after: float


@dataclass
class SelectionResult:
    rounds: list[SelectionRound] = field(default_factory=list)
    stop_reason: str = ""
    final_variance: np.ndarray | None = None

    @property
    def selected(self) -> list[int]:
        return [i for r in self.rounds for i in r.members]


class UncertaintyTracker:
    """GP uncertainty tracker over a fixed set of embeddings (SynAlign sec. 3.2), updated incrementally.

    Parameters
    ----------
    embeddings: (N, d) array (row i = sample i).
    tau: bandwidth of eq. 2, a number or ``"median"`` (see :func:`resolve_bandwidth`).
    kernel: ``"exponential"`` (eq. 2, default) or ``"rbf"`` (squared distance).
    noise: observation-noise variance added to ``K(E_s, E_s)`` (eq. 5's ``I``; see the module docstring for
        why the default is a 1e-6 jitter rather than 1).
    device: ``"auto"`` (CUDA when torch sees one), ``"cpu"``, ``"cuda"``...
    dtype: precision (:data:`PRECISIONS`). ``"mixed"`` (default): the embeddings are stored and multiplied in
        float32, the precision sentence encoders give them in, with close pairs recomputed exactly
        (:data:`REFINE_RELATIVE_SQUARED_DISTANCE`); the factor, the Schur complements and the variances are
        float64. It agrees with dense eq. 5 to ~3e-8 on real embeddings, as ``"float64"`` does, and streams
        half the bytes per round. ``"float64"``: everything float64 (the reference). ``"float32"``: the factor
        in float32 too, for the least memory (N x |S| x 4 bytes); ~1e-6 from eq. 5.
    capacity: rows to preallocate for the factor (grown by doubling when exceeded).
    lookahead: how many of the largest variances the next-pivot guess considers (0 turns the guess off; the
        picks are the same either way, see :meth:`_likely_next_pivot`).
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        tau: float | str = "median",
        kernel: str = "exponential",
        noise: float = 1e-6,
        device: str | torch.device = "auto",
        dtype: str = "mixed",
        capacity: int | None = None,
        median_sample: int = 1000,
        seed: int = 0,
        warn_bandwidth: bool = True,
        lookahead: int = 32,
    ) -> None:
        array = np.asarray(embeddings)
        if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"embeddings must be a non-empty 2-D array (N, d), got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("embeddings contain NaN or infinite values")
        if dtype not in PRECISIONS:
            raise ValueError(f"dtype must be one of {sorted(PRECISIONS)}, got {dtype!r}")
        if not (float(noise) >= 0 and math.isfinite(float(noise))):
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        self.kernel = _check_kernel(kernel)
        self.noise = float(noise)
        if isinstance(tau, str) and array.shape[0] < 2:
            self.tau = 1.0  # a single sample: the bandwidth plays no role
        else:
            self.tau = resolve_bandwidth(tau, array, median_sample, seed)
        self.device = resolve_device(device)
        self.embedding_dtype, self.factor_dtype = PRECISIONS[dtype]
        self.n = array.shape[0]
        # as_tensor + to: no copy when the input already has the storage dtype (and lives on the device)
        self._embeddings = torch.as_tensor(array, device=self.device).to(self.embedding_dtype)
        self._squared_norms = _squared_norms_float64(self._embeddings)
        self._max_squared_norm = float(self._squared_norms.max())
        # Prior variance kappa(e, e) = 1 for both kernels (eq. 1). Always float64.
        self.variance = torch.ones(self.n, dtype=torch.float64, device=self.device)
        self.selected_mask = torch.zeros(self.n, dtype=torch.bool, device=self.device)
        self.selected_order: list[int] = []
        self._factor = torch.empty(
            (min(self.n, capacity or 256), self.n), dtype=self.factor_dtype, device=self.device
        )
        self._rank = 0
        self._warned_ties = False
        self.lookahead = int(lookahead)
        self.lookahead_hits = 0
        self._lookahead_row: tuple[int, torch.Tensor] | None = None
        if warn_bandwidth:
            message = check_bandwidth(array, self.tau, self.kernel, seed=seed)
            if message:
                logger.warning(message)
                warnings.warn(message, BandwidthWarning, stacklevel=2)

    # -- kernel rows --------------------------------------------------------------------------------
    def squared_distances_to(
        self, indices: Sequence[int] | torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Squared Euclidean distances (len(indices), N), float64, from the given samples to every sample
        (written into ``out`` when given: a float64 (len(indices), N) tensor)."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        rows = self._embeddings[index]
        # E @ rows^T (a tall-skinny product) streams E about twice as fast as rows @ E^T on CPU BLAS. A single
        # row goes through the matrix-vector kernel, which measured 2-2.5x slower on MKL (torch 2.13, 20k x 384,
        # float32 and float64) than the matrix-matrix one with the row given twice: so give it twice.
        padded = rows.repeat(2, 1) if rows.shape[0] == 1 and self.device.type == "cpu" else rows
        products = self._embeddings @ padded.T  # (N, len(padded)), storage dtype
        squared = out
        if squared is None:
            squared = torch.empty((rows.shape[0], self.n), dtype=torch.float64, device=self.device)
        squared.copy_(products[:, : rows.shape[0]].T)
        # |a|^2 + |b|^2 - 2 a.b, in place (these few full-length passes are a good part of a round)
        squared.mul_(-2.0).add_(self._squared_norms[index, None]).add_(self._squared_norms[None, :])
        if self.embedding_dtype != torch.float64:
            # float32 products: recompute close pairs exactly (REFINE_RELATIVE_SQUARED_DISTANCE). The bound
            # uses the largest |b|^2, so it catches a superset of the pairs the relative rule names; few per row.
            bound = REFINE_RELATIVE_SQUARED_DISTANCE * (self._squared_norms[index] + self._max_squared_norm)
            close_row, close_col = torch.nonzero(squared < bound[:, None], as_tuple=True)
            if close_row.numel():
                difference = rows[close_row].to(torch.float64) - self._embeddings[close_col].to(torch.float64)
                squared[close_row, close_col] = (difference * difference).sum(1)
        return squared.clamp_min_(0.0)

    def distances_to(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Euclidean distances (len(indices), N), float64, from the given samples to every sample."""
        return self.squared_distances_to(indices).sqrt_()

    def kernel_rows(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """K(E_indices, E_all), (len(indices), N)."""
        return self._kernel_from_squared(self.squared_distances_to(indices))

    def _kernel_from_squared(self, squared: torch.Tensor) -> torch.Tensor:
        """Eq. 2 (or the RBF option) from squared distances, in place (the tracker's hot path;
        :func:`kernel_from_distance` is the out-of-place form the references use)."""
        if self.kernel == "rbf":
            return squared.mul_(-0.5 / (self.tau * self.tau)).exp_()
        return squared.sqrt_().mul_(-0.5 / self.tau).exp_()

    # -- state ----------------------------------------------------------------------------------------
    @property
    def n_selected(self) -> int:
        return self._rank

    def variances(self) -> np.ndarray:
        """Current posterior variance of every sample (float64 numpy copy)."""
        return self.variance.detach().to("cpu", torch.float64).numpy().copy()

    def max_unselected_variance(self) -> float:
        """Largest variance among unselected samples (NaN when every sample is selected)."""
        if self._rank >= self.n:
            return float("nan")
        return float(self.variance.masked_fill(self.selected_mask, -math.inf).max())

    def _grow(self, needed: int) -> None:
        if needed <= self._factor.shape[0]:
            return
        rows = min(self.n, max(needed, 2 * self._factor.shape[0]))
        grown = torch.empty((rows, self.n), dtype=self.factor_dtype, device=self.device)
        grown[: self._rank] = self._factor[: self._rank]
        self._factor = grown

    # -- update (eq. 4-5, blocked pivoted Cholesky) ---------------------------------------------------
    def observe(self, indices: Sequence[int], kernel_rows: torch.Tensor | None = None) -> None:
        """Condition the GP on the given (not yet selected) samples observed at 0 (sec. 3.2 step 2) and update
        the posterior variance of every sample: a rank-|indices| update of the Cholesky factor."""
        index = torch.as_tensor(list(indices), dtype=torch.long, device=self.device)
        if index.numel() == 0:
            return
        if len(set(index.tolist())) != index.numel():
            raise ValueError(f"indices contain duplicates: {list(indices)}")
        if bool(self.selected_mask[index].any()):
            raise ValueError("observe() got samples that are already selected")
        block = self.kernel_rows(index) if kernel_rows is None else kernel_rows.to(torch.float64, copy=True)
        self._observe_owned(index, block)

    def _noisy_schur(self, schur: torch.Tensor) -> torch.Tensor:
        """The batch's Schur complement C_BB symmetrised (rounding) plus ``noise`` on the diagonal (eq. 5's
        term on K(E_s, E_s)), ready for its Cholesky factor."""
        schur = 0.5 * (schur + schur.T)
        schur.diagonal().add_(self.noise)
        return schur

    def _observe_owned(self, indices: Sequence[int] | torch.Tensor, block: torch.Tensor) -> None:
        """:meth:`observe` without the checks, for ``block`` = K(indices, all) in float64 that it may
        overwrite (step() passes a fresh one; its members are unselected and distinct by construction)."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        factor = self._factor[: self._rank]
        if self._rank:
            block.sub_(_small_times_wide(factor[:, index].T.contiguous(), factor))  # C = K(B, all) - F_B^T F
        chol = _safe_cholesky(self._noisy_schur(block[:, index]), self.noise)
        self._grow(self._rank + index.numel())
        target = self._factor[self._rank : self._rank + index.numel()]
        if self.factor_dtype == torch.float64:  # solve straight into the factor's new rows
            new_rows = torch.linalg.solve_triangular(chol, block, upper=False, out=target)
        else:
            new_rows = torch.linalg.solve_triangular(chol, block, upper=False)
            target.copy_(new_rows)
        self._rank += index.numel()
        # variances from the float64 rows, before any rounding to a float32 factor (mul + sum: vector_norm
        # over dim 0, a strided reduction, measured 2 ms against 0.3 ms here)
        self.variance.sub_((new_rows * new_rows).sum(0)).clamp_min_(0.0)
        self.selected_mask[index] = True
        self.selected_order.extend(index.tolist())

    # -- one round of Algorithm 1 ---------------------------------------------------------------------
    def step(self, k: int, round_number: int = 0) -> SelectionRound | None:
        """Pick the argmax-variance unselected sample and its ``k`` nearest unselected neighbours (eq. 3),
        observe them (eq. 4-5) and return the round; None when every sample is already selected.

        Ties in the variance go to the lowest index (``torch.argmax`` returns the first maximum)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if self._rank >= self.n:
            return None
        masked = self.variance.masked_fill(self.selected_mask, -math.inf)
        pivot = int(torch.argmax(masked))
        pivot_variance = float(masked[pivot])
        if not self._warned_ties and self._rank > 0 and pivot_variance > 1 - 1e-9:
            unselected = self.variance[~self.selected_mask]
            if float(unselected.min()) > 1 - 1e-9:
                self._warned_ties = True
                message = (
                    f"every unselected variance is still 1 after {self._rank} selections: tau={self.tau:.4g} "
                    "is too small for these embeddings, argmax falls back to index order"
                )
                logger.warning(message)
                warnings.warn(message, BandwidthWarning, stacklevel=2)
        if self._lookahead_row is not None and self._lookahead_row[0] == pivot:
            pivot_squared = self._lookahead_row[1]  # computed in the previous round's second pass
            self.lookahead_hits += 1
        else:
            pivot_squared = self.squared_distances_to([pivot])[0]
        self._lookahead_row = None
        distances = pivot_squared.sqrt()
        available = self.n - self._rank - 1
        n_neighbours = min(k, available)
        if n_neighbours > 0:
            candidate = distances.masked_fill(self.selected_mask, math.inf)
            candidate[pivot] = math.inf
            # k smallest by topk, then ties broken towards the lower index (as a stable argsort would, like
            # the brute-force reference): take every candidate up to the k-th distance and sort those stably
            kth = torch.topk(candidate, n_neighbours, largest=False, sorted=True).values[-1]
            within = torch.nonzero(candidate <= kth).flatten()
            order = within[torch.sort(candidate[within], stable=True).indices[:n_neighbours]]
            neighbours = order.tolist()
        else:
            neighbours = []
        members = [pivot, *neighbours]
        guess = self._likely_next_pivot(members)
        # one buffer of squared distances: the pivot's, its neighbours' and the guessed next pivot's (the last
        # two from one pass over the embeddings); the members' rows then become their kernel rows in place
        ahead = [guess] if guess is not None else []
        buffer = torch.empty((len(members) + len(ahead), self.n), dtype=torch.float64, device=self.device)
        buffer[0].copy_(pivot_squared)
        if neighbours or ahead:
            self.squared_distances_to(neighbours + ahead, out=buffer[1:])
        if ahead:
            self._lookahead_row = (guess, buffer[-1])
        self._observe_owned(members, self._kernel_from_squared(buffer[: len(members)]))
        return SelectionRound(
            round=round_number,
            pivot=pivot,
            members=tuple(members),
            variance_at_selection=pivot_variance,
            max_variance_after=self.max_unselected_variance(),
        )

    def _likely_next_pivot(self, members: list[int]) -> int | None:
        """The sample most likely to be the next round's pivot, so that its distances can ride along in this
        round's pass over the embeddings (each round otherwise makes two passes: the pivot's row, then its
        neighbours' rows). None when disabled (``lookahead=0``) or fewer than two samples would be left.

        The guess is the unselected sample of largest variance after observing ``members`` among the
        ``lookahead`` largest now (variances only decrease, so the true next pivot is among them unless the
        batch lowered them all). Their updated variances come from the same blocked step as :meth:`observe`,
        restricted to ``members`` + candidates (a (|B| + M)-point problem). The guess only decides which row
        is computed ahead: the next round still takes the argmax of the full variance vector and computes
        the pivot's row as usual when the guess was wrong, so the picks do not depend on it."""
        remaining = self.n - self._rank - len(members)
        if self.lookahead <= 0 or remaining < 2:
            return None
        masked = self.variance.masked_fill(self.selected_mask, -math.inf)
        masked[members] = -math.inf
        candidates = torch.topk(masked, min(self.lookahead, remaining)).indices
        index = torch.cat([torch.as_tensor(members, device=self.device), candidates])
        points = self._embeddings[index].to(torch.float64)
        squared = self._squared_norms[index, None] + self._squared_norms[None, index] - 2.0 * points @ points.T
        block = self._kernel_from_squared(squared.clamp_min_(0.0))[: len(members)]
        if self._rank:
            factor = self._factor[: self._rank, index].to(torch.float64)
            block = block - factor[:, : len(members)].T @ factor
        chol, info = torch.linalg.cholesky_ex(self._noisy_schur(block[:, : len(members)]))
        if int(info) != 0:  # near-duplicates: observe() will add jitter; skip the guess this round
            return None
        reduction = torch.linalg.solve_triangular(chol, block[:, len(members) :], upper=False).square().sum(0)
        return int(candidates[torch.argmax(self.variance[candidates] - reduction)])

    def run(self, k: int, threshold: float = 0.0, max_rounds: int | None = None) -> SelectionResult:
        """Algorithm 1's loop: rounds run while the largest unselected variance is above ``threshold``
        (sigma), at most ``max_rounds`` rounds (None = no limit), until every sample is selected."""
        if max_rounds is not None and max_rounds < 0:
            raise ValueError(f"max_rounds must be >= 0 or None, got {max_rounds}")
        if max_rounds is not None:
            self._grow(min(self.n, self._rank + max_rounds * (k + 1)))
        with _one_blas_thread_beside_torch_threads(self.device):
            return self._run(k, threshold, max_rounds)

    def _run(self, k: int, threshold: float, max_rounds: int | None) -> SelectionResult:
        result = SelectionResult()
        while True:
            if max_rounds is not None and len(result.rounds) >= max_rounds:
                result.stop_reason = "max_rounds"
                break
            if self._rank >= self.n:
                result.stop_reason = "exhausted"
                break
            if self.max_unselected_variance() <= threshold:
                result.stop_reason = "threshold"
                break
            result.rounds.append(self.step(k, round_number=len(result.rounds)))
        result.final_variance = self.variances()
        return result

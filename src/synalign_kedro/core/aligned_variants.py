"""SynAlign's aligned variants (sec. 3.4 and 4.1): the ``alignment`` settings, the weights learnt for the
``synalign`` pool, resampling by weight, the three variants ``synalign_all`` / ``synalign_random`` /
``synalign_mmd``, and the |Theta| sweep of table 5. The weights themselves come from :mod:`.alignment`
(eq. 8-11)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .alignment import PARAMETRISATIONS, PROJECTION_KINDS, PoolAlignment, align_pool, effective_sample_size
from .arrays import require_columns
from .metrics import wasserstein_distance

logger = logging.getLogger(__name__)

MAX_MLFLOW_TRACE_POINTS = 100


class AlignmentSettings(BaseModel):
    """The ``alignment`` parameter block (sec. 3.4, eq. 8-11); see docs/alignment.md for the choices."""

    model_config = ConfigDict(extra="forbid")

    projection: Literal[PROJECTION_KINDS] = Field(  # type: ignore[valid-type]
        "rff", description="rff = random Fourier features (RBF-kernel MMD); linear = the paper's Theta"
    )
    n_projections: int = Field(2000, ge=1, description="rff: features D; linear: |Theta|")
    bandwidth: float | Literal["median"] = Field("median", description="rff only: RBF bandwidth")
    per_label: bool = Field(True, description="align each label's rows to that label's real rows")
    parametrisation: Literal[PARAMETRISATIONS] = "softmax"  # type: ignore[valid-type]
    n_iterations: int = Field(500, ge=1, description="gradient steps at most")
    learning_rate: float = Field(0.05, gt=0)
    # 1e-3 was measured and rejected: tied on the constructed quality case, ~2.5x fewer steps on a large pool,
    # but on the few-shot benchmark it stopped at ~80 steps and weakened the alignment (docs/alignment.md)
    tolerance: float = Field(1e-6, ge=0, description="stop when 10 steps improve the loss by less than this")
    device: str = "auto"
    n_resample: int | None = Field(None, ge=0, description="zeta; null = resample_fraction x pool size")
    resample_fraction: float = Field(0.5, gt=0, description="zeta as a fraction of the pool")
    replace: bool = Field(True, description="resample by weight with replacement (paper)")


class AlignmentSweepSettings(BaseModel):
    """The ``alignment_sweep`` parameter block (table 5, pipeline ``alignment_sweep``)."""

    model_config = ConfigDict(extra="forbid")

    n_projections: list[int] = Field(default_factory=lambda: [10, 50, 100, 500, 1000])
    projections: list[Literal[PROJECTION_KINDS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["linear", "rff"]
    )
    max_real_points: int = Field(2000, ge=2, description="real rows in each exact Wasserstein computation")


def align(
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    real_train: pd.DataFrame,
    real_embeddings: np.ndarray,
    settings: AlignmentSettings,
    seed: int,
    **overrides: Any,
) -> PoolAlignment:
    """:func:`.alignment.align_pool` driven by the settings (``overrides`` replace single settings, e.g. the
    sweep's ``n_projections``). An empty pool is an error: there is nothing to align."""
    _check_rows("synthetic_pool_synalign", pool, pool_embeddings)
    _check_rows("real_train", real_train, real_embeddings)
    if len(pool) == 0:
        raise ValueError(
            "synthetic_pool_synalign is empty: nothing to align. The generation of method synalign kept no "
            "sample; see data/08_reporting/llm_usage_synalign.json"
        )
    options = settings.model_dump(
        include={
            "per_label", "projection", "n_projections", "bandwidth", "n_iterations", "learning_rate",
            "parametrisation", "tolerance", "device",
        }
    )  # fmt: skip
    options.update(overrides)
    return align_pool(
        real_embeddings,
        pool_embeddings,
        real_labels=real_train["label"].astype(str).tolist(),
        synthetic_labels=pool["label"].astype(str).tolist(),
        seed=seed,
        **options,
    )


def learn_weights(
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    real_train: pd.DataFrame,
    real_embeddings: np.ndarray,
    settings: AlignmentSettings,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """One weight per synthetic sample (eq. 10): the weights table (``synthetic_id, label, weight``), the loss
    trace (``group, iteration, loss``) and the scalar results (losses, iterations, effective sample size, the
    mean loss per iteration thinned to at most :data:`MAX_MLFLOW_TRACE_POINTS`)."""
    result = align(pool, pool_embeddings, real_train, real_embeddings, settings, seed)
    weights = pd.DataFrame(
        {
            "synthetic_id": pool["synthetic_id"].astype(str).to_numpy(),
            "label": pool["label"].astype(str).to_numpy(),
            "weight": result.weights,
        }
    )
    trace = pd.DataFrame(
        [
            {"group": group, "iteration": iteration, "loss": loss}
            for group, group_result in result.traces.items()
            for iteration, loss in enumerate(group_result.losses)
        ],
        columns=["group", "iteration", "loss"],
    )
    ess = effective_sample_size(result.weights)
    logger.info(
        "Alignment (%s, |Theta|=%d, per_label=%s): loss %.6g -> %.6g in %d iterations, ESS %.1f of %d",
        settings.projection, settings.n_projections, settings.per_label, result.initial_loss,
        result.final_loss, result.iterations, ess, len(pool),
    )  # fmt: skip
    total = trace.groupby("iteration")["loss"].mean() if len(trace) else pd.Series(dtype=float)
    stride = max(1, int(np.ceil(len(total) / MAX_MLFLOW_TRACE_POINTS)))
    summary = {
        "alignment_initial_loss": float(result.initial_loss),
        "alignment_final_loss": float(result.final_loss),
        "alignment_iterations": float(result.iterations),
        "alignment_effective_sample_size": float(ess),
        "alignment_loss": [(int(step), float(value)) for step, value in total.iloc[::stride].items()],
    }
    return weights, trace, summary


def build_variants(
    pool: pd.DataFrame, weights: pd.DataFrame, settings: AlignmentSettings, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three variants of sec. 4.1: ``synalign_all`` (whole pool), ``synalign_random`` and ``synalign_mmd``
    (zeta rows each); each is the pool's columns plus ``weight``.

    ``synalign_random`` and ``synalign_mmd`` are drawn by one rule and differ only in the weights inside a
    label (uniform, or eq. 10's): the same zeta, the same ``replace`` setting, the same seed and, with
    ``per_label``, the same rows per label (the largest-remainder allocation of zeta by the learnt weights'
    mass per label, i.e. the real label shares). So a difference between their scores is the weights' doing,
    not a difference of size, label mix or duplicates. (Without replacement, a label with fewer rows of
    positive weight than its allocation gives ``synalign_mmd`` fewer rows, with a warning.)"""
    require_columns(weights, ["synthetic_id", "weight"], "alignment_weights")
    if not pool["synthetic_id"].astype(str).equals(weights["synthetic_id"].astype(str)):
        raise ValueError("alignment_weights is not row-aligned with synthetic_pool_synalign; re-run alignment")
    if len(pool) == 0:
        raise ValueError("synthetic_pool_synalign is empty: no aligned variant can be built")
    pool = pool.reset_index(drop=True).assign(weight=weights["weight"].to_numpy(dtype=float))
    n_resample = resolve_n_resample(len(pool), settings.n_resample, settings.resample_fraction)
    strata = pool["label"].astype(str).tolist() if settings.per_label else None
    random_rows, mmd_rows = resample_pair(pool["weight"].to_numpy(), n_resample, settings.replace, seed, strata)
    logger.info(
        "Variants: all=%d, random=%d (%d distinct), mmd=%d (%d distinct) rows",
        len(pool), len(random_rows), len(np.unique(random_rows)), len(mmd_rows), len(np.unique(mmd_rows)),
    )  # fmt: skip
    return pool, pool.iloc[random_rows].reset_index(drop=True), pool.iloc[mmd_rows].reset_index(drop=True)


def resample_pair(
    weights: np.ndarray, n_samples: int, replace: bool, seed: int, strata: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(random_rows, weighted_rows)``: :func:`resample_indices` with uniform weights and with ``weights``,
    under one rule: the same ``n_samples``, ``replace``, ``seed`` and ``strata``, and with strata the same
    rows per stratum (allocated by ``weights``' mass, :func:`stratum_allocation`). Only the weights inside a
    stratum differ."""
    allocation = stratum_allocation(weights, strata, n_samples) if strata is not None else None
    uniform = np.ones(len(weights))
    random_rows = resample_indices(
        uniform, n_samples, replace=replace, seed=seed, strata=strata, allocation=allocation
    )
    weighted_rows = resample_indices(
        weights, n_samples, replace=replace, seed=seed, strata=strata, allocation=allocation
    )
    return random_rows, weighted_rows


def resolve_n_resample(pool_size: int, n_resample: int | None, resample_fraction: float) -> int:
    """zeta: ``n_resample`` when given, else ``round(resample_fraction * pool size)`` (at least 1 for a
    non-empty pool)."""
    if n_resample is not None:
        if int(n_resample) < 0:
            raise ValueError(f"alignment.n_resample must be >= 0 or null, got {n_resample}")
        return int(n_resample)
    if not 0 < resample_fraction:
        raise ValueError(f"alignment.resample_fraction must be > 0, got {resample_fraction}")
    if pool_size == 0:
        return 0
    return max(1, int(round(resample_fraction * pool_size)))


def theta_sweep(
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    real_train: pd.DataFrame,
    real_embeddings: np.ndarray,
    settings: AlignmentSettings,
    sweep: AlignmentSweepSettings,
    seed: int,
) -> pd.DataFrame:
    """Paper table 5: align with each |Theta| in ``sweep.n_projections`` and report the Wasserstein distance
    between the real embeddings and the resampled (zeta by weight) synthetic embeddings."""
    rng = np.random.default_rng(seed)
    real_rows = np.sort(
        rng.choice(len(real_embeddings), min(sweep.max_real_points, len(real_embeddings)), replace=False)
    )
    real_subsample = real_embeddings[real_rows]
    n_resample = resolve_n_resample(len(pool), settings.n_resample, settings.resample_fraction)
    strata = pool["label"].astype(str).tolist() if settings.per_label else None
    rows = []
    learnt = None  # the first usable weights: their per-label mass (the real label shares) sets the random rows
    for projection in sweep.projections:
        for n_projections in sweep.n_projections:
            result = align(
                pool, pool_embeddings, real_train, real_embeddings, settings, seed,
                projection=projection, n_projections=int(n_projections),
            )  # fmt: skip
            if result.weights.sum() <= 0:
                logger.warning("All-zero weights: no Wasserstein distance for |Theta|=%s", n_projections)
                rows.append({"projection": projection, "n_projections": int(n_projections)})
                continue
            learnt = result.weights if learnt is None else learnt
            resampled = resample_indices(
                result.weights, n_resample, replace=settings.replace, seed=seed, strata=strata
            )
            rows.append(
                {
                    "projection": projection,
                    "n_projections": int(n_projections),
                    "wasserstein_resampled": _wasserstein(real_subsample, pool_embeddings[resampled], None),
                    "wasserstein_weighted": _wasserstein(real_subsample, pool_embeddings, result.weights),
                    "final_loss": result.final_loss,
                    "effective_sample_size": effective_sample_size(result.weights),
                }
            )
    # the baselines: every row with equal weight (synalign_all) and zeta rows at random (synalign_random, drawn
    # by the same rule as the weighted rows: build_variants' resample_pair, per-label allocation of the weights)
    if learnt is not None:
        random_rows, _ = resample_pair(learnt, n_resample, settings.replace, seed, strata)
    else:
        random_rows = resample_indices(np.ones(len(pool)), n_resample, replace=settings.replace, seed=seed)
    rows.append(
        {
            "projection": "none (uniform)",
            "n_projections": 0,
            "wasserstein_resampled": _wasserstein(real_subsample, pool_embeddings[random_rows], None),
            "wasserstein_weighted": _wasserstein(real_subsample, pool_embeddings, None),
            "effective_sample_size": float(len(pool)),
        }
    )
    columns = [
        "projection", "n_projections", "wasserstein_resampled", "wasserstein_weighted", "final_loss",
        "effective_sample_size",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _wasserstein(real: np.ndarray, synthetic: np.ndarray, weights: np.ndarray | None) -> float:
    return float(wasserstein_distance(real, synthetic, weights=weights))


def _check_rows(name: str, frame: pd.DataFrame, embeddings: np.ndarray) -> None:
    if len(frame) != len(embeddings):
        raise ValueError(
            f"{name} has {len(frame)} rows but its embeddings have {len(embeddings)}: they must be row-aligned"
        )


# --------------------------------------------------------------------------------------------------------
# Resampling (sec. 3.4, last paragraph)
# --------------------------------------------------------------------------------------------------------
def resample_indices(
    weights: np.ndarray,
    n_samples: int,
    replace: bool = True,
    seed: int = 0,
    strata: Sequence[str] | None = None,
    allocation: Mapping[str, int] | None = None,
) -> np.ndarray:
    """Draw ``n_samples`` row indices with probability proportional to ``weights``.

    ``replace=True`` is the paper's resampling with replacement. Without replacement, at most the number of
    rows with positive weight can be drawn; a larger request is capped with a warning. With ``strata``
    (e.g. labels) each stratum gets a share of ``n_samples`` proportional to its total weight (largest
    remainder, :func:`stratum_allocation`), then draws inside it: the label mix of the result then follows the
    weights exactly instead of by chance. ``allocation`` (with ``strata``) gives the rows per stratum instead,
    e.g. the allocation of other weights, so that two draws share one label mix; a stratum it leaves out gets
    none. Returns the indices sorted.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"weights must be 1-D, got shape {w.shape}")
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("weights must be finite and non-negative")
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    rng = np.random.default_rng(seed)
    if n_samples == 0 or w.sum() <= 0:
        if n_samples > 0:
            logger.warning("All weights are 0 (or the pool is empty): nothing to resample")
        return np.zeros(0, dtype=np.int64)
    if strata is None:
        return np.sort(_draw(w, np.arange(len(w)), n_samples, replace, rng))
    strata = np.asarray([str(s) for s in strata])
    if len(strata) != len(w):
        raise ValueError(f"strata has {len(strata)} entries for {len(w)} weights")
    if allocation is None:
        allocation = stratum_allocation(w, strata, n_samples)
    drawn = []
    for group, count in sorted(allocation.items()):
        rows = np.flatnonzero(strata == group)
        if count > 0 and w[rows].sum() > 0:
            drawn.append(_draw(w[rows], rows, int(count), replace, rng))
    return np.sort(np.concatenate(drawn)) if drawn else np.zeros(0, dtype=np.int64)


def stratum_allocation(weights: np.ndarray, strata: Sequence[str], n_samples: int) -> dict[str, int]:
    """Rows per stratum: ``n_samples`` shared among the strata of positive total weight in proportion to that
    weight (largest remainder, so the counts sum to ``n_samples`` exactly)."""
    w = np.asarray(weights, dtype=np.float64)
    strata = np.asarray([str(s) for s in strata])
    if len(strata) != len(w):
        raise ValueError(f"strata has {len(strata)} entries for {len(w)} weights")
    if w.sum() <= 0:
        return {}
    groups = [g for g in sorted(set(strata.tolist())) if w[strata == g].sum() > 0]
    masses = np.array([w[strata == g].sum() for g in groups]) / w.sum()
    return {g: int(c) for g, c in zip(groups, _largest_remainder(masses, n_samples), strict=True)}


def _draw(w: np.ndarray, rows: np.ndarray, count: int, replace: bool, rng: np.random.Generator) -> np.ndarray:
    if not replace:
        available = int((w > 0).sum())
        if count > available:
            logger.warning(
                "Resampling without replacement: %d samples requested but only %d have positive weight",
                count,
                available,
            )
            count = available
    return rows[rng.choice(len(w), size=count, replace=replace, p=w / w.sum())]


def _largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    raw = shares * total
    counts = np.floor(raw).astype(int)
    for index in np.argsort(-(raw - counts))[: total - counts.sum()]:
        counts[index] += 1
    return counts

"""Thin nodes of the `alignment` pipeline (SynAlign sec. 3.4): unpack parameters, call
``synalign_kedro.core.alignment``, return data."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core import alignment as core
from synalign_kedro.core.embedding import embed_with_settings
from synalign_kedro.core.metrics import wasserstein_distance

logger = logging.getLogger(__name__)

MAX_MLFLOW_TRACE_POINTS = 100


def embed_synthetic_pool(pool: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """E_gen: embed the pool's texts with the same embedder and cache as the real data (sec. 3.1)."""
    return embed_with_settings(pool["text"].astype(str).tolist(), embedding)


def _align(
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    real_train: pd.DataFrame,
    real_embeddings: np.ndarray,
    params: dict[str, Any],
    seed: int,
    **overrides: Any,
):
    """``core.align_pool`` driven by the ``alignment`` parameters (``overrides`` replace single settings,
    e.g. the sweep's ``n_projections``)."""
    settings = {
        "per_label": params["per_label"],
        "projection": params["projection"],
        "n_projections": params["n_projections"],
        "bandwidth": params.get("bandwidth", "median"),
        "n_iterations": params["n_iterations"],
        "learning_rate": params["learning_rate"],
        "parametrisation": params["parametrisation"],
        "tolerance": params.get("tolerance", 1e-6),
        "device": params.get("device", "auto"),
    }
    settings.update(overrides)
    return core.align_pool(
        real_embeddings,
        pool_embeddings,
        real_labels=real_train["label"].astype(str).tolist(),
        synthetic_labels=pool["label"].astype(str).tolist(),
        seed=seed,
        **settings,
    )


def learn_alignment_weights(
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    real_train: pd.DataFrame,
    real_embeddings: np.ndarray,
    params: dict[str, Any],
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Learn one weight per synthetic sample (eq. 10); returns the weights table, the loss trace and the
    MLflow metrics."""
    _check_rows("synthetic_pool_synalign", pool, pool_embeddings)
    _check_rows("real_train", real_train, real_embeddings)
    result = _align(pool, pool_embeddings, real_train, real_embeddings, params, seed)
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
    ess = core.effective_sample_size(result.weights)
    logger.info(
        "Alignment (%s, |Theta|=%d, per_label=%s): loss %.6g -> %.6g in %d iterations, ESS %.1f of %d",
        params["projection"],
        params["n_projections"],
        params["per_label"],
        result.initial_loss,
        result.final_loss,
        result.iterations,
        ess,
        len(pool),
    )
    metrics = {
        "alignment_initial_loss": {"value": _finite(result.initial_loss), "step": 0},
        "alignment_final_loss": {"value": _finite(result.final_loss), "step": 0},
        "alignment_iterations": {"value": float(result.iterations), "step": 0},
        "alignment_effective_sample_size": {"value": ess, "step": 0},
    }
    total = trace.groupby("iteration")["loss"].mean() if len(trace) else pd.Series(dtype=float)
    stride = max(1, int(np.ceil(len(total) / MAX_MLFLOW_TRACE_POINTS)))
    if len(total):
        metrics["alignment_loss"] = [
            {"value": float(value), "step": int(step)} for step, value in total.iloc[::stride].items()
        ]
    return weights, trace, metrics


def build_variants(
    pool: pd.DataFrame, weights: pd.DataFrame, params: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three variants of sec. 4.1: ``synalign_all`` (whole pool), ``synalign_random`` (zeta uniformly at
    random) and ``synalign_mmd`` (zeta by weight); each is the pool's columns plus ``weight``."""
    if not pool["synthetic_id"].astype(str).equals(weights["synthetic_id"].astype(str)):
        raise ValueError(
            "alignment_weights is not row-aligned with synthetic_pool_synalign; re-run alignment"
        )
    pool = pool.reset_index(drop=True).assign(weight=weights["weight"].to_numpy(dtype=float))
    n_resample = resolve_n_resample(len(pool), params["n_resample"], params["resample_fraction"])
    strata = pool["label"].astype(str).tolist() if params["per_label"] else None
    uniform = np.full(len(pool), 1.0)
    # Random baseline: without replacement whenever the pool is large enough (the paper's "zeta randomly
    # selected samples"); with replacement only if zeta exceeds the pool.
    random_rows = core.resample_indices(uniform, n_resample, replace=n_resample > len(pool), seed=seed)
    mmd_rows = core.resample_indices(
        pool["weight"].to_numpy(), n_resample, replace=params["replace"], seed=seed, strata=strata
    )
    logger.info(
        "Variants: all=%d, random=%d, mmd=%d rows (%d distinct)",
        len(pool),
        len(random_rows),
        len(mmd_rows),
        len(np.unique(mmd_rows)),
    )
    return pool, pool.iloc[random_rows].reset_index(drop=True), pool.iloc[mmd_rows].reset_index(drop=True)


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
        logger.warning("The synthetic pool is empty: every alignment variant will be empty")
        return 0
    return max(1, int(round(resample_fraction * pool_size)))


def plot_alignment_trace(trace: pd.DataFrame):
    """The alignment loss (eq. 10) per gradient step, one line per aligned group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for group, rows in trace.groupby("group"):
        axis.plot(rows["iteration"], rows["loss"], label="all" if group == "__all__" else str(group))
    if trace.empty:
        axis.text(0.5, 0.5, "empty synthetic pool: nothing aligned", ha="center", va="center")
    else:
        positive = trace["loss"] > 0
        if positive.all():
            axis.set_yscale("log")
        axis.legend(title="group")
    axis.set_xlabel("gradient step")
    axis.set_ylabel("alignment loss (eq. 10)")
    axis.set_title("SynAlign distribution alignment")
    figure.tight_layout()
    plt.close(figure)
    return figure


def sweep_n_projections(
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    real_train: pd.DataFrame,
    real_embeddings: np.ndarray,
    params: dict[str, Any],
    sweep: dict[str, Any],
    seed: int,
) -> pd.DataFrame:
    """Paper table 5: align with each |Theta| in ``sweep['n_projections']`` and report the Wasserstein
    distance between the real embeddings and the resampled (zeta by weight) synthetic embeddings."""
    _check_rows("synthetic_pool_synalign", pool, pool_embeddings)
    _check_rows("real_train", real_train, real_embeddings)
    rng = np.random.default_rng(seed)
    max_real = int(sweep.get("max_real_points", 2000))
    real_rows = np.sort(rng.choice(len(real_embeddings), min(max_real, len(real_embeddings)), replace=False))
    real_subsample = real_embeddings[real_rows]
    n_resample = resolve_n_resample(len(pool), params["n_resample"], params["resample_fraction"])
    strata = pool["label"].astype(str).tolist() if params["per_label"] else None
    rows = []
    for projection in sweep.get("projections", [params["projection"]]):
        for n_projections in sweep["n_projections"]:
            result = _align(
                pool, pool_embeddings, real_train, real_embeddings, params, seed,
                projection=projection, n_projections=int(n_projections),
            )  # fmt: skip
            if len(pool) == 0 or result.weights.sum() <= 0:
                logger.warning(
                    "Empty pool or all-zero weights: no Wasserstein distance for |Theta|=%s", n_projections
                )
                rows.append({"projection": projection, "n_projections": int(n_projections)})
                continue
            resampled = core.resample_indices(
                result.weights, n_resample, replace=params["replace"], seed=seed, strata=strata
            )
            rows.append(
                {
                    "projection": projection,
                    "n_projections": int(n_projections),
                    "wasserstein_resampled": _wasserstein(real_subsample, pool_embeddings[resampled], None),
                    "wasserstein_weighted": _wasserstein(real_subsample, pool_embeddings, result.weights),
                    "final_loss": result.final_loss,
                    "effective_sample_size": core.effective_sample_size(result.weights),
                }
            )
    if len(pool):
        # the baselines: every row with equal weight (synalign_all) and zeta rows at random (synalign_random)
        random_rows = core.resample_indices(
            np.ones(len(pool)), n_resample, replace=n_resample > len(pool), seed=seed
        )
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
        "projection",
        "n_projections",
        "wasserstein_resampled",
        "wasserstein_weighted",
        "final_loss",
        "effective_sample_size",
    ]
    return pd.DataFrame(rows, columns=columns)


def _wasserstein(real: np.ndarray, synthetic: np.ndarray, weights: np.ndarray | None) -> float:
    return float(wasserstein_distance(real, synthetic, weights=weights))


def _check_rows(name: str, frame: pd.DataFrame, embeddings: np.ndarray) -> None:
    if len(frame) != len(embeddings):
        raise ValueError(
            f"{name} has {len(frame)} rows but its embeddings have {len(embeddings)}: they must be row-aligned"
        )


def _finite(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0

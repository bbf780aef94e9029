"""Thin nodes of the `alignment` pipeline (SynAlign sec. 3.4): validate the ``alignment`` block, make one call
into ``core.aligned_variants``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core import aligned_variants as core
from synalign_kedro.core.embedding import embed_with_settings
from synalign_kedro.core.plots import alignment_loss_figure, figure_png, weights_histogram
from synalign_kedro.pipelines.tracking import mlflow_metrics


def embed_synthetic_pool(pool: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """E_gen: embed the pool's texts with the same embedder and cache as the real data (sec. 3.1)."""
    return embed_with_settings(pool["text"].astype(str).tolist(), embedding)


def learn_alignment_weights(
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    real_train: pd.DataFrame,
    real_embeddings: np.ndarray,
    params: dict[str, Any],
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """One weight per synthetic sample (eq. 10): the weights table, the loss trace and the MLflow metrics."""
    settings = core.AlignmentSettings.model_validate(params)
    weights, trace, summary = core.learn_weights(pool, pool_embeddings, real_train, real_embeddings, settings, seed)
    return weights, trace, mlflow_metrics(summary)


def build_variants(
    pool: pd.DataFrame, weights: pd.DataFrame, params: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``synalign_all``, ``synalign_random`` and ``synalign_mmd`` (sec. 4.1)."""
    return core.build_variants(pool, weights, core.AlignmentSettings.model_validate(params), seed)


def plot_alignment_trace(trace: pd.DataFrame) -> bytes:
    """The alignment loss per gradient step (PNG)."""
    return figure_png(alignment_loss_figure(trace))


def plot_alignment_weights(weights: pd.DataFrame) -> bytes:
    """Histogram of the learnt weights relative to uniform (PNG)."""
    return figure_png(weights_histogram(weights["weight"].to_numpy()))

"""Thin nodes of the exploration pipeline (SynAlign sec. 3.2, appendix A.2.3): validate the parameter block,
make one call into ``core``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core.coverage import ExplorationSettings, exploration_coverage
from synalign_kedro.core.demonstrations import demonstration_batches
from synalign_kedro.core.embedding import embed_with_settings
from synalign_kedro.core.plots import coverage_figure, figure_png
from synalign_kedro.pipelines.tracking import mlflow_metrics


def embed_real_train(real_train: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """Sentence embeddings of ``real_train.text`` (row i = row i), cached by content hash in ``core.embedding``."""
    return embed_with_settings(real_train["text"].astype(str).tolist(), embedding)


def select_demonstration_batches(
    real_train: pd.DataFrame, real_train_embeddings: np.ndarray, exploration: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Demonstration batches (Algorithm 1, per label by default) and the per-round max-variance trace."""
    settings = ExplorationSettings.model_validate(exploration)
    return demonstration_batches(real_train, real_train_embeddings, settings.tracker, seed)


def compute_coverage(
    real_train_embeddings: np.ndarray, exploration: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, bytes, dict[str, Any]]:
    """Coverage curves GP vs random (figure 4), their plot (PNG), and MLflow metrics: the scalars
    (``coverage_auc_gp``, ``coverage_gp_at_50``, ...) and the mean curves as metric histories
    (``coverage_curve_gp``, ``coverage_curve_random``, step = sampling step)."""
    table, summary = exploration_coverage(
        real_train_embeddings, ExplorationSettings.model_validate(exploration), seed
    )
    mean_curves = table.groupby(["sampler", "step"])["coverage"].mean()
    curves = {
        f"coverage_curve_{sampler}": list(mean_curves.loc[sampler].items())
        for sampler in mean_curves.index.get_level_values(0).unique()
    }
    return table, figure_png(coverage_figure(table)), mlflow_metrics({**summary, **curves})

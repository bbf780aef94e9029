"""Evaluation nodes (SynAlign sec. 4): validate the ``evaluation`` block, make one call into
``core.evaluation`` (metrics) or ``core.plots`` (figures, as PNG bytes). Distances are measured against
``real_heldout`` (never fitted on) under one MMD bandwidth shared by every variant."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core import evaluation as core
from synalign_kedro.core.embedding import EmbeddingSettings, embed_with_settings
from synalign_kedro.core.plots import coverage_figure, figure_png, joint_tsne, tsne_grid_figure
from synalign_kedro.pipelines.tracking import mlflow_metrics

logger = logging.getLogger(__name__)


def embed_real_test(real_test: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """Sentence embeddings of the real test texts (cached by content)."""
    return embed_with_settings(real_test["text"].astype(str).tolist(), embedding)


def embed_real_heldout(real_heldout: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """Sentence embeddings of the held-out real texts, the reference of every distance (cached by content)."""
    return embed_with_settings(real_heldout["text"].astype(str).tolist(), embedding)


def estimate_mmd_bandwidth(real_heldout_embeddings: np.ndarray, evaluation: dict[str, Any], seed: int) -> float:
    """The one RBF bandwidth of every variant's MMD: ``evaluation.mmd.bandwidth`` when a number, else the median
    pairwise distance of the held-out real rows only."""
    settings = core.EvaluationSettings.model_validate(evaluation)
    bandwidth = core.heldout_bandwidth(real_heldout_embeddings, settings, seed)
    logger.info("MMD bandwidth (every variant): %.6g from %d held-out rows", bandwidth, len(real_heldout_embeddings))
    return bandwidth


def prepare_synthetic_samples(
    variant: str, synthetic_samples: pd.DataFrame, real_train: pd.DataFrame
) -> pd.DataFrame:
    """The variant's usable rows (text and a real label); an empty set is an error, not a result."""
    return core.usable_synthetic_samples(synthetic_samples, real_train["label"].astype(str).unique(), variant)


def embed_synthetic_samples(synthetic_samples: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """Sentence embeddings of the synthetic texts (cached by content)."""
    return embed_with_settings(synthetic_samples["text"].astype(str).tolist(), embedding)


def no_synthetic_samples(real_train_embeddings: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Gold adds no synthetic rows: an empty sample table and a (0, d) embedding array."""
    empty = pd.DataFrame({"text": pd.Series(dtype=str), "label": pd.Series(dtype=str)})
    return empty, np.zeros((0, np.asarray(real_train_embeddings).shape[1]), dtype=np.float32)


def compute_distribution_metrics(
    real_heldout_embeddings: np.ndarray,
    synthetic_embeddings: np.ndarray,
    synthetic_samples: pd.DataFrame,
    mmd_bandwidth: float,
    evaluation: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Wasserstein distance and MMD^2 to the held-out real rows (the shared bandwidth), vocabulary size, size
    (tables 2 and 3)."""
    settings = core.EvaluationSettings.model_validate(evaluation)
    return core.synthetic_distribution_metrics(
        real_heldout_embeddings, synthetic_embeddings, synthetic_samples, mmd_bandwidth, settings, seed
    )


def reference_distribution_metrics(
    real_train: pd.DataFrame,
    real_train_embeddings: np.ndarray,
    real_heldout_embeddings: np.ndarray,
    mmd_bandwidth: float,
    evaluation: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Gold's row: real train vs held-out real distances (a floor), real train's vocabulary size."""
    settings = core.EvaluationSettings.model_validate(evaluation)
    return core.gold_distribution_metrics(
        real_train, real_train_embeddings, real_heldout_embeddings, mmd_bandwidth, settings, seed
    )


def compute_downstream_metrics(
    real_train: pd.DataFrame,
    real_train_embeddings: np.ndarray,
    real_test: pd.DataFrame,
    real_test_embeddings: np.ndarray,
    synthetic_samples: pd.DataFrame,
    synthetic_embeddings: np.ndarray,
    evaluation: dict[str, Any],
    embedding: dict[str, Any],
) -> dict[str, Any]:
    """Accuracy and macro-F1 on real test of the classifier trained on real train + the variant (table 1)."""
    return core.downstream_metrics(
        real_train, real_train_embeddings, real_test, real_test_embeddings, synthetic_samples,
        synthetic_embeddings, core.EvaluationSettings.model_validate(evaluation),
        EmbeddingSettings.model_validate(embedding),
    )  # fmt: skip


def build_evaluation_table(**variant_metrics: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The evaluation table (one row per variant, in input order) and the MLflow metrics
    (``<variant>.<metric>``, finite numbers only). Keyword names are ``<variant>__distribution`` and
    ``<variant>__downstream``."""
    rows: dict[str, dict[str, Any]] = {}
    for key, metrics in variant_metrics.items():
        variant, _, part = key.rpartition("__")
        if not variant or part not in ("distribution", "downstream"):
            raise ValueError(
                f"unexpected input name {key!r}; expected <variant>__distribution or <variant>__downstream"
            )
        rows.setdefault(variant, {}).update(metrics)
    table = core.evaluation_table(rows)
    logger.info("Evaluation table:\n%s", table.to_string(index=False))
    flat = {f"{variant}.{name}": value for variant, row in rows.items() for name, value in row.items()}
    return table, mlflow_metrics(flat)


def plot_tsne(
    real_train_embeddings: np.ndarray, evaluation: dict[str, Any], seed: int, **variant_embeddings: np.ndarray
) -> bytes:
    """Figure 3 (PNG): one shared t-SNE map of real train and every variant's synthetic embeddings."""
    options = core.EvaluationSettings.model_validate(evaluation).tsne
    real_2d, variants_2d = joint_tsne(
        real_train_embeddings, variant_embeddings, max_real=options.max_real,
        max_per_variant=options.max_per_variant, perplexity=options.perplexity, seed=seed,
    )  # fmt: skip
    return figure_png(tsne_grid_figure(real_2d, variants_2d, columns=options.columns))


def plot_coverage(coverage: pd.DataFrame) -> bytes:
    """Figure 4(b) (PNG): coverage curves from the exploration pipeline's coverage table."""
    return figure_png(coverage_figure(coverage))

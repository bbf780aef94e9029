"""Evaluation nodes (SynAlign sec. 4): thin wrappers that unpack parameters and call ``synalign_kedro.core``."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core.classifier import evaluate_downstream, filter_synthetic_samples, finetune_downstream
from synalign_kedro.core.embedding import embed_with_settings
from synalign_kedro.core.metrics import mmd_rbf, vocabulary_size, wasserstein_distance, wasserstein_method
from synalign_kedro.core.plots import coverage_figure, joint_tsne, tsne_grid_figure

logger = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "variant",
    "wasserstein",
    "mmd",
    "vocab_size",
    "accuracy",
    "accuracy_std",
    "macro_f1",
    "macro_f1_std",
    "n_synthetic",
    "n_train_real",
    "n_seeds",
    "classifier",
    "wasserstein_method",
    "distribution_reference",
]
CLASSIFIERS = ("logistic_regression", "finetune")


def _embed(texts: list[str], embedding: dict[str, Any]) -> np.ndarray:
    return embed_with_settings(texts, embedding)


def embed_real_test(real_test: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """Sentence embeddings of the real test texts (cached by content)."""
    return _embed(real_test["text"].astype(str).tolist(), embedding)


def prepare_synthetic_samples(synthetic_samples: pd.DataFrame, real_train: pd.DataFrame) -> pd.DataFrame:
    """Keep synthetic rows with text and a real label (the others are dropped with a warning)."""
    has_method = "method" in synthetic_samples.columns and len(synthetic_samples) > 0
    variant = str(synthetic_samples["method"].iloc[0]) if has_method else "synthetic"
    return filter_synthetic_samples(
        synthetic_samples, real_train["label"].astype(str).unique(), variant=variant
    )


def embed_synthetic_samples(synthetic_samples: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """Sentence embeddings of the synthetic texts (cached by content; (0, d) for an empty set)."""
    return _embed(synthetic_samples["text"].astype(str).tolist(), embedding)


def no_synthetic_samples(real_train_embeddings: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Gold adds no synthetic rows: an empty sample table and a (0, d) embedding array."""
    empty = pd.DataFrame({"text": pd.Series(dtype=str), "label": pd.Series(dtype=str)})
    return empty, np.zeros((0, np.asarray(real_train_embeddings).shape[1]), dtype=np.float32)


def _distribution_metrics(
    real_embeddings: np.ndarray, other_embeddings: np.ndarray, evaluation: dict[str, Any], seed: int
) -> dict[str, Any]:
    wasserstein_params = evaluation.get("wasserstein", {})
    mmd_params = evaluation.get("mmd", {})
    max_exact = int(wasserstein_params.get("max_exact", 5000))
    return {
        "wasserstein": wasserstein_distance(
            real_embeddings,
            other_embeddings,
            max_exact=max_exact,
            n_projections=int(wasserstein_params.get("n_projections", 200)),
            seed=seed,
        ),
        "wasserstein_method": wasserstein_method(len(real_embeddings), len(other_embeddings), max_exact),
        "mmd": mmd_rbf(
            real_embeddings,
            other_embeddings,
            bandwidth=mmd_params.get("bandwidth", "median"),
            device=mmd_params.get("device", "auto"),
            chunk_size=int(mmd_params.get("chunk_size", 2048)),
            seed=seed,
        ),
    }


def compute_distribution_metrics(
    real_train_embeddings: np.ndarray,
    synthetic_embeddings: np.ndarray,
    synthetic_samples: pd.DataFrame,
    evaluation: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Wasserstein distance and MMD^2 between real train and the synthetic set, the synthetic vocabulary size
    and the number of synthetic rows (paper tables 2 and 3). NaN distances for an empty synthetic set."""
    return {
        **_distribution_metrics(real_train_embeddings, synthetic_embeddings, evaluation, seed),
        "vocab_size": vocabulary_size(synthetic_samples["text"]),
        "n_synthetic": len(synthetic_samples),
        "distribution_reference": "synthetic",
    }


def reference_distribution_metrics(
    real_train: pd.DataFrame,
    real_train_embeddings: np.ndarray,
    real_test_embeddings: np.ndarray,
    evaluation: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Gold's row: the distances between real train and held-out real test (the floor a perfect generator of
    that many samples would reach) and the vocabulary size of real train (paper table 3, Gold row)."""
    return {
        **_distribution_metrics(real_train_embeddings, real_test_embeddings, evaluation, seed),
        "vocab_size": vocabulary_size(real_train["text"]),
        "n_synthetic": 0,
        "distribution_reference": "real_test",
    }


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
    """Accuracy and macro-F1 on real test of a classifier trained on real train + the synthetic rows, mean and
    standard deviation over ``evaluation.seeds`` (paper table 1). ``evaluation.classifier`` picks
    ``logistic_regression`` (frozen embeddings, default) or ``finetune`` (the embedder with a linear head)."""
    classifier = evaluation.get("classifier", "logistic_regression")
    seeds = evaluation.get("seeds", [0])
    if classifier == "logistic_regression":
        options = evaluation.get("logistic_regression", {})
        result = evaluate_downstream(
            real_train_embeddings,
            real_train["label"].astype(str).tolist(),
            real_test_embeddings,
            real_test["label"].astype(str).tolist(),
            seeds,
            synthetic_emb=synthetic_embeddings,
            synthetic_labels=synthetic_samples["label"].astype(str).tolist(),
            resample=evaluation.get("resample", "bootstrap"),
            C=float(options.get("C", 1.0)),
            max_iter=int(options.get("max_iter", 1000)),
        )
    elif classifier == "finetune":
        options = dict(evaluation.get("finetune", {}))
        result = finetune_downstream(
            real_train["text"].astype(str).tolist(),
            real_train["label"].astype(str).tolist(),
            real_test["text"].astype(str).tolist(),
            real_test["label"].astype(str).tolist(),
            seeds,
            synthetic_texts=synthetic_samples["text"].astype(str).tolist(),
            synthetic_labels=synthetic_samples["label"].astype(str).tolist(),
            model=embedding["model"],
            device=options.pop("device", embedding.get("device", "auto")),
            **options,
        )
    else:
        raise ValueError(f"evaluation.classifier must be one of {CLASSIFIERS}; got {classifier!r}")
    return {**result, "classifier": classifier}


def build_evaluation_table(
    **variant_metrics: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Gather the per-variant metric dicts into the evaluation table (one row per variant, in input order) and
    the MLflow metrics (``<variant>.<metric>``, numeric and finite values only).

    Keyword names are ``<variant>__distribution`` and ``<variant>__downstream``.
    """
    rows: dict[str, dict[str, Any]] = {}
    for key, metrics in variant_metrics.items():
        variant, _, part = key.rpartition("__")
        if not variant or part not in ("distribution", "downstream"):
            raise ValueError(
                f"unexpected input name {key!r}; expected <variant>__distribution or <variant>__downstream"
            )
        rows.setdefault(variant, {"variant": variant}).update(metrics)
    for row in rows.values():
        row.pop("n_train_synthetic", None)  # the classifier's count; the table's n_synthetic says the same
    table = pd.DataFrame(list(rows.values()))
    ordered = [column for column in TABLE_COLUMNS if column in table.columns]
    table = table[ordered + [column for column in table.columns if column not in ordered]]
    mlflow_metrics = {}
    for row in rows.values():
        for name, value in row.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                continue
            if math.isfinite(float(value)):
                mlflow_metrics[f"{row['variant']}.{name}"] = {"value": float(value), "step": 0}
    logger.info("Evaluation table:\n%s", table.to_string(index=False))
    return table, mlflow_metrics


def plot_tsne(
    real_train_embeddings: np.ndarray, evaluation: dict[str, Any], seed: int, **variant_embeddings: np.ndarray
):
    """Figure 3: one shared t-SNE map of real train and every variant's synthetic embeddings."""
    options = evaluation.get("tsne", {})
    real_2d, variants_2d = joint_tsne(
        real_train_embeddings,
        variant_embeddings,
        max_real=int(options.get("max_real", 500)),
        max_per_variant=int(options.get("max_per_variant", 200)),
        perplexity=float(options.get("perplexity", 30.0)),
        seed=seed,
    )
    return tsne_grid_figure(real_2d, variants_2d, columns=int(options.get("columns", 3)))


def plot_coverage(coverage: pd.DataFrame):
    """Figures 4(b)/5: coverage curves from the exploration pipeline's coverage table."""
    return coverage_figure(coverage)

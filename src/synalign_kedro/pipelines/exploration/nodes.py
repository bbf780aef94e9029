"""Exploration nodes: thin wrappers around ``core.embedding``, ``core.exploration`` and ``core.coverage``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core.coverage import coverage_summary, coverage_table, plot_coverage
from synalign_kedro.core.embedding import embed_with_settings
from synalign_kedro.core.exploration import select_demonstrations

logger = logging.getLogger(__name__)

BATCH_COLUMNS = ["batch_id", "label", "row_ids", "texts", "variance_at_selection", "round"]
TRACKER_KEYS = {
    "k",
    "tau",
    "kernel",
    "noise",
    "threshold",
    "max_rounds",
    "per_label",
    "device",
    "dtype",
    "median_sample",
}
COVERAGE_KEYS = {
    "steps",
    "k",
    "random_seeds",
    "merge",
    "max_points",
    "tsne_perplexity",
    "tsne_threads",
    "report_steps",
}


def _check_keys(section: dict[str, Any], allowed: set[str], where: str) -> dict[str, Any]:
    unknown = set(section or {}) - allowed
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in {where}; allowed: {sorted(allowed)}")
    return dict(section or {})


def _check_frame(real_train: pd.DataFrame, embeddings: np.ndarray) -> None:
    missing = {"row_id", "text", "label"} - set(real_train.columns)
    if missing:
        raise ValueError(f"real_train lacks columns {sorted(missing)}")
    if len(embeddings) != len(real_train):
        raise ValueError(
            f"real_train_embeddings has {len(embeddings)} rows but real_train has {len(real_train)}: "
            "re-run the embed_real_train node"
        )


def embed_real_train(real_train: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """Sentence embeddings of ``real_train.text`` (row i = row i), cached by content hash in ``core.embedding``."""
    if "text" not in real_train.columns:
        raise ValueError("real_train lacks the column 'text'")
    return embed_with_settings(real_train["text"].astype(str).tolist(), embedding)


def select_demonstration_batches(
    real_train: pd.DataFrame, real_train_embeddings: np.ndarray, exploration: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Demonstration batches (Algorithm 1, per label by default) and the per-round max-variance trace."""
    _check_frame(real_train, real_train_embeddings)
    tracker = _check_keys(exploration.get("tracker", {}), TRACKER_KEYS, "exploration.tracker")
    batches, trace = select_demonstrations(
        real_train_embeddings, real_train["label"].astype(str).tolist(), seed=int(seed), **tracker
    )
    row_ids = real_train["row_id"].astype(str).to_numpy()
    texts = real_train["text"].astype(str).to_numpy()
    frame = pd.DataFrame(
        [
            {
                "batch_id": batch.batch_id,
                "label": batch.label,
                "row_ids": [row_ids[i] for i in batch.rows],
                "texts": [texts[i] for i in batch.rows],
                "variance_at_selection": float(batch.variance_at_selection),
                "round": batch.round,
            }
            for batch in batches
        ],
        columns=BATCH_COLUMNS,
    )
    frame = frame.astype({"batch_id": "int64", "round": "int64", "variance_at_selection": "float64"})
    logger.info("Exploration: %d demonstration batches over %d labels", len(frame), frame["label"].nunique())
    return frame, pd.DataFrame(trace)


def compute_coverage(
    real_train_embeddings: np.ndarray, exploration: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, Any, dict[str, Any]]:
    """Coverage curves GP vs random (figure 4), their plot, and MLflow metrics: the mean curves as metric
    histories (``coverage_curve_gp``, ``coverage_curve_random``, step = sampling step) plus scalars
    (``coverage_auc_gp``, ``coverage_auc_random``, ``coverage_gp_at_50``, ...)."""
    tracker = _check_keys(exploration.get("tracker", {}), TRACKER_KEYS, "exploration.tracker")
    settings = _check_keys(exploration.get("coverage", {}), COVERAGE_KEYS, "exploration.coverage")
    report_steps = settings.pop("report_steps", [50, 200])
    k = settings.pop("k", None)
    table = coverage_table(
        real_train_embeddings,
        k=int(tracker.get("k", 4) if k is None else k),
        tau=tracker.get("tau", "median"),
        kernel=tracker.get("kernel", "exponential"),
        noise=float(tracker.get("noise", 1e-6)),
        device=tracker.get("device", "auto"),
        dtype=tracker.get("dtype", "mixed"),
        tsne_seed=int(seed),
        **settings,
    )
    summary = coverage_summary(table, at_steps=report_steps)
    logger.info("Coverage: %s", {name: round(value, 4) for name, value in summary.items()})
    metrics: dict[str, Any] = {name: {"value": value, "step": 0} for name, value in summary.items()}
    mean_curves = table.groupby(["sampler", "step"])["coverage"].mean()
    for sampler in mean_curves.index.get_level_values(0).unique():
        metrics[f"coverage_curve_{sampler}"] = [
            {"value": float(value), "step": int(step)} for step, value in mean_curves.loc[sampler].items()
        ]
    return table, plot_coverage(table), metrics

"""The evaluation of one synthetic variant against real data (SynAlign sec. 4, tables 1-3), driven by the
``evaluation`` parameter block.

Distribution metrics (tables 2-3, :mod:`.metrics`): the Wasserstein distance and MMD^2 between the variant and
``real_heldout``, the real rows that nothing is fitted on (ingestion holds them out of the train file). The
alignment fits its weights to ``real_train``, so measuring against ``real_train`` would report its own training
objective; and the MMD is taken under **one** RBF bandwidth for every variant, the median pairwise distance of
the held-out rows alone (:func:`heldout_bandwidth`), so that no variant moves its own kernel. Gold (real only)
gets real train vs real held-out as a floor. Also the synthetic vocabulary size, and the accuracy / macro-F1 on
``real_test`` of a downstream classifier trained on real train + the variant (:mod:`.classifier`)."""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .classifier import RESAMPLE_MODES, evaluate_downstream, filter_synthetic_samples, finetune_downstream
from .embedding import EmbeddingSettings
from .metrics import (
    median_heuristic_bandwidth,
    mmd_rbf,
    vocabulary_size,
    wasserstein_distance,
    wasserstein_method,
)

logger = logging.getLogger(__name__)

CLASSIFIERS = ("logistic_regression", "finetune")
DISTRIBUTION_REFERENCE = "real_heldout"  # every row's wasserstein / mmd are measured against these rows
TABLE_COLUMNS = [
    "variant", "wasserstein", "mmd", "vocab_size", "accuracy", "accuracy_std", "macro_f1", "macro_f1_std",
    "n_synthetic", "n_train_real", "n_seeds", "classifier", "wasserstein_method", "mmd_bandwidth",
    "distribution_reference", "accuracy_per_seed", "macro_f1_per_seed",
]  # fmt: skip


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WassersteinSettings(_Block):
    max_exact: int = Field(5000, ge=1, description="exact EMD (W1) while both sets are at most this big")
    n_projections: int = Field(200, ge=1, description="directions of the sliced Wasserstein beyond that")


class MMDSettings(_Block):
    bandwidth: float | Literal["median"] = Field(
        "median",
        description="one sigma for every variant: a number, or the median of held-out pairwise distances",
    )
    chunk_size: int = Field(2048, ge=1)
    device: str = "auto"


class LogisticRegressionSettings(_Block):
    C: float = Field(1.0, gt=0)  # scikit-learn's default, fixed in advance: not chosen on real_test
    max_iter: int = Field(2000, ge=1)


class FinetuneSettings(_Block):
    """Paper appendix A.2.2, table 7. ``device`` null = the embedder's device."""

    epochs: int = Field(6, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    head_learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    max_steps: int | None = Field(None, ge=1, description="cap on optimiser steps (null = epochs x batches)")
    max_seq_length: int = Field(128, ge=8)
    device: str | None = None


class TsneSettings(_Block):
    max_real: int = Field(500, ge=2)
    max_per_variant: int = Field(200, ge=1)
    perplexity: float = Field(30.0, gt=0)
    columns: int = Field(3, ge=1)


class EvaluationSettings(_Block):
    """The ``evaluation`` parameter block; see docs/evaluation.md."""

    wasserstein: WassersteinSettings = Field(default_factory=WassersteinSettings)
    mmd: MMDSettings = Field(default_factory=MMDSettings)
    classifier: Literal[CLASSIFIERS] = "logistic_regression"  # type: ignore[valid-type]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], min_length=1)
    resample: Literal[RESAMPLE_MODES] = "bootstrap"  # type: ignore[valid-type]
    logistic_regression: LogisticRegressionSettings = Field(default_factory=LogisticRegressionSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    tsne: TsneSettings = Field(default_factory=TsneSettings)


def usable_synthetic_samples(synthetic: pd.DataFrame, real_labels, variant: str) -> pd.DataFrame:
    """The variant's rows with text and a real label (others dropped with a warning); an empty result is an
    error, so that no metric of an empty set is reported as a result."""
    kept = filter_synthetic_samples(synthetic, real_labels, variant=variant)
    if kept.empty:
        raise ValueError(
            f"variant {variant!r}: the synthetic set has no usable row ({len(synthetic)} rows before cleaning), "
            "so there is nothing to evaluate. Check the generation step's usage report "
            "(data/08_reporting/llm_usage_<method>.json) for the failures"
        )
    return kept


def heldout_bandwidth(heldout_embeddings: np.ndarray, settings: EvaluationSettings, seed: int) -> float:
    """The RBF bandwidth of every variant's MMD: ``mmd.bandwidth`` when it is a number, else the median
    pairwise distance of the held-out real rows only (no synthetic set moves it). NaN, with a warning, when
    fewer than 2 held-out rows exist (``heldout_share: 0``): there is no reference to measure against."""
    if not isinstance(settings.mmd.bandwidth, str):
        return float(settings.mmd.bandwidth)
    heldout = np.asarray(heldout_embeddings)
    if len(heldout) < 2:
        logger.warning(
            "real_heldout has %d row(s): no MMD bandwidth and no distances to held-out real data (set "
            "heldout_share > 0 in the dataset profile)",
            len(heldout),
        )
        return math.nan
    return median_heuristic_bandwidth(heldout, heldout[:0], seed=seed, device=settings.mmd.device)


def distribution_metrics(
    reference_embeddings: np.ndarray,
    other_embeddings: np.ndarray,
    bandwidth: float,
    settings: EvaluationSettings,
    seed: int,
) -> dict[str, Any]:
    """Wasserstein distance and MMD^2 (tables 2-3) between ``reference_embeddings`` (the held-out real rows)
    and ``other_embeddings``, the MMD under the given ``bandwidth`` (the same for every variant). NaN when the
    reference is empty or the bandwidth is not a number (no held-out rows)."""
    max_exact = settings.wasserstein.max_exact
    no_reference = len(reference_embeddings) == 0 or not math.isfinite(bandwidth)
    return {
        "wasserstein": math.nan if no_reference else wasserstein_distance(
            reference_embeddings, other_embeddings, max_exact=max_exact,
            n_projections=settings.wasserstein.n_projections, seed=seed,
        ),
        "wasserstein_method": wasserstein_method(len(reference_embeddings), len(other_embeddings), max_exact),
        "mmd": math.nan if no_reference else mmd_rbf(
            reference_embeddings, other_embeddings, bandwidth=bandwidth, device=settings.mmd.device,
            chunk_size=settings.mmd.chunk_size, seed=seed,
        ),
        "mmd_bandwidth": float(bandwidth),
        "distribution_reference": DISTRIBUTION_REFERENCE,
    }  # fmt: skip


def synthetic_distribution_metrics(
    heldout_embeddings: np.ndarray,
    synthetic_embeddings: np.ndarray,
    synthetic: pd.DataFrame,
    bandwidth: float,
    settings: EvaluationSettings,
    seed: int,
) -> dict[str, Any]:
    """A variant's row of tables 2-3: its distances to the held-out real rows, vocabulary size and size."""
    return {
        **distribution_metrics(heldout_embeddings, synthetic_embeddings, bandwidth, settings, seed),
        "vocab_size": vocabulary_size(synthetic["text"]),
        "n_synthetic": len(synthetic),
    }


def gold_distribution_metrics(
    real_train: pd.DataFrame,
    real_train_embeddings: np.ndarray,
    heldout_embeddings: np.ndarray,
    bandwidth: float,
    settings: EvaluationSettings,
    seed: int,
) -> dict[str, Any]:
    """Gold's row: the distances between real train and the held-out real rows (two samples of the same
    distribution: the floor that a perfect generator of that many samples would reach, sample-size dependent)
    and the vocabulary size of real train (table 3, Gold row)."""
    return {
        **distribution_metrics(heldout_embeddings, real_train_embeddings, bandwidth, settings, seed),
        "vocab_size": vocabulary_size(real_train["text"]),
        "n_synthetic": 0,
    }


def downstream_metrics(
    real_train: pd.DataFrame,
    real_train_embeddings: np.ndarray,
    real_test: pd.DataFrame,
    real_test_embeddings: np.ndarray,
    synthetic: pd.DataFrame,
    synthetic_embeddings: np.ndarray,
    settings: EvaluationSettings,
    embedding: EmbeddingSettings,
) -> dict[str, Any]:
    """Accuracy and macro-F1 on real test of a classifier trained on real train + the synthetic rows, mean and
    standard deviation over ``settings.seeds`` (table 1): ``logistic_regression`` on frozen embeddings, or
    ``finetune`` (the embedder with a linear head)."""
    train_labels = real_train["label"].astype(str).tolist()
    test_labels = real_test["label"].astype(str).tolist()
    synthetic_labels = synthetic["label"].astype(str).tolist()
    if settings.classifier == "logistic_regression":
        result = evaluate_downstream(
            real_train_embeddings, train_labels, real_test_embeddings, test_labels, settings.seeds,
            synthetic_emb=synthetic_embeddings, synthetic_labels=synthetic_labels, resample=settings.resample,
            C=settings.logistic_regression.C, max_iter=settings.logistic_regression.max_iter,
        )  # fmt: skip
    else:
        options = settings.finetune.model_dump()
        device = options.pop("device") or embedding.device
        result = finetune_downstream(
            real_train["text"].astype(str).tolist(), train_labels, real_test["text"].astype(str).tolist(),
            test_labels, settings.seeds, synthetic_texts=synthetic["text"].astype(str).tolist(),
            synthetic_labels=synthetic_labels, model=embedding.model, device=device, **options,
        )  # fmt: skip
    return {**result, "classifier": settings.classifier}


def evaluation_table(variant_metrics: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per variant (in the order given) from ``{variant: metrics}``, columns :data:`TABLE_COLUMNS`
    first. NaN stays NaN here (the table shows it); :func:`finite_numbers` keeps it out of trackers. A list
    (the per-seed scores, in the order of ``evaluation.seeds``) becomes one JSON text cell, the same in memory
    and in the CSV file."""
    rows = [{"variant": variant, **metrics} for variant, metrics in variant_metrics.items()]
    for row in rows:
        row.pop("n_train_synthetic", None)  # the classifier's count; the table's n_synthetic says the same
        for name, value in row.items():
            if isinstance(value, list | tuple | np.ndarray):
                row[name] = json.dumps([float(item) for item in value])
    table = pd.DataFrame(rows)
    ordered = [column for column in TABLE_COLUMNS if column in table.columns]
    return table[ordered + [column for column in table.columns if column not in ordered]]


def finite_numbers(values: dict[str, Any]) -> dict[str, float]:
    """The entries of ``values`` that are finite numbers (bools and NaN/inf left out), as floats: what may
    reach a metrics tracker as a number."""
    out = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            continue
        if math.isfinite(float(value)):
            out[name] = float(value)
    return out

"""Privacy checks for a synthetic text set before it is exported (SynAlign sec. 4.6, online A/B test).

SynAlign's stage 2 prompts (sec. 3.3, eq. 7) put real demonstrations in front of the LLM, so a synthetic
sample can be a verbatim or near-verbatim copy of a real record. Before synthetic data for a sensitive
domain leaves the project, every synthetic row is checked against the real data:

1. **exact copy**: the normalised text (Unicode NFKC, case-folded, whitespace collapsed) equals a real
   text (train or test);
2. **embedding near-duplicate**: cosine similarity of the sentence embeddings (sec. 3.1, Sentence-BERT)
   to the closest real record (train or test) at or above ``cosine_threshold``;
3. **character n-gram near-duplicate**: Jaccard similarity of the sets of character n-grams to the closest
   real record at or above ``jaccard_threshold`` (catches copies with a few words changed, which an
   embedding may place a little further away);
4. **distance to closest record (DCR)**: cosine distance of each synthetic row to its nearest real
   *training* row, compared with the same distance for a real *holdout* set (real test rows, which the
   generator never saw). A synthetic row closer to the training data than the ``dcr_holdout_quantile``
   quantile of the holdout's DCR is closer than real unseen data usually is, and is flagged.

Everything here is plain numpy / scipy / scikit-learn: no Kedro, no LLM.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer

from .arrays import finite_matrix, require_columns

logger = logging.getLogger(__name__)

FLAG_EXACT_COPY = "exact_copy"
FLAG_EMBEDDING_NEAR_DUPLICATE = "embedding_near_duplicate"
FLAG_CHAR_NGRAM_NEAR_DUPLICATE = "char_ngram_near_duplicate"
FLAG_LOW_DCR = "low_distance_to_closest_record"
ALL_FLAGS = (FLAG_EXACT_COPY, FLAG_EMBEDDING_NEAR_DUPLICATE, FLAG_CHAR_NGRAM_NEAR_DUPLICATE, FLAG_LOW_DCR)

_WHITESPACE = re.compile(r"\s+")


class PrivacyThresholds(BaseModel):
    """The ``ab_export.privacy`` parameter block: thresholds of the four checks (see the module docstring).

    ``dcr_holdout_quantile=None`` disables the holdout-relative DCR rule; the absolute rule
    ``DCR < 1 - cosine_threshold`` (the embedding near-duplicate against the training rows) always applies.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cosine_threshold: float = Field(0.95, gt=0.0, le=1.0, description="embedding near-duplicate: cos >= this")
    char_ngram_size: int = Field(5, ge=1, description="character n-grams of the Jaccard check")
    jaccard_threshold: float = Field(0.7, gt=0.0, le=1.0, description="char n-gram Jaccard >= this")
    dcr_holdout_quantile: float | None = Field(
        0.01, ge=0.0, lt=1.0, description="flag DCR below this quantile of the holdout's DCR (null = off)"
    )
    chunk_size: int = Field(512, ge=1)
    report_quantiles: tuple[float, ...] = (0.01, 0.05, 0.5)


def copy_key(text: str) -> str:
    """The key under which a synthetic and a real text count as copies (not the text ingestion stores): NFKC, case-folded, whitespace collapsed, stripped."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", str(text))).casefold().strip()


def exact_copy_matches(synthetic_texts: Sequence[str], real_texts: Sequence[str]) -> np.ndarray:
    """Index into ``real_texts`` of the real text each synthetic text copies (after ``copy_key``), or -1."""
    first_index: dict[str, int] = {}
    for index, text in enumerate(real_texts):
        first_index.setdefault(copy_key(text), index)
    return np.array([first_index.get(copy_key(t), -1) for t in synthetic_texts], dtype=np.int64)


def nearest_cosine(
    query_embeddings: np.ndarray, reference_embeddings: np.ndarray, chunk_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the largest cosine similarity to a reference row and that row's index.

    Rows are normalised here, so the inputs need not be unit-norm. Computed in chunks of query rows so the
    (chunk, n_reference) similarity block is the largest array held.
    """
    query = _unit_rows(finite_matrix("query_embeddings", query_embeddings))
    reference = _unit_rows(finite_matrix("reference_embeddings", reference_embeddings))
    if query.shape[1] != reference.shape[1]:
        raise ValueError(
            f"embedding dimensions differ: query has {query.shape[1]}, reference has {reference.shape[1]}"
        )
    if reference.shape[0] == 0:
        raise ValueError("reference_embeddings is empty: there is no real record to compare with")
    best_similarity = np.empty(query.shape[0], dtype=np.float64)
    best_index = np.empty(query.shape[0], dtype=np.int64)
    for start in range(0, query.shape[0], chunk_size):
        block = query[start : start + chunk_size] @ reference.T
        best_index[start : start + chunk_size] = block.argmax(axis=1)
        best_similarity[start : start + chunk_size] = block.max(axis=1)
    return np.clip(best_similarity, -1.0, 1.0), best_index


def char_ngram_vectors(texts: Sequence[str], ngram_size: int = 5) -> sparse.csr_matrix:
    """Binary sparse indicator of the character n-grams of each normalised text.

    scikit-learn's ``HashingVectorizer`` (char analyser, 2**22 buckets, no sign flipping) stands in for an
    exact n-gram vocabulary: it needs no fit, so train, test and synthetic texts land in one space. A hash
    collision can only merge two n-grams, which raises a Jaccard similarity by about one n-gram in a few
    hundred thousand; the tests compare it with exact Python sets. (``datasketch``'s MinHash would be the
    library choice for millions of rows; it is not a dependency and the sets here are small enough to be
    compared exactly.)
    """
    n_features = 2**22
    if len(texts) == 0:  # HashingVectorizer cannot transform an empty list
        return sparse.csr_matrix((0, n_features), dtype=np.float32)
    vectorizer = HashingVectorizer(
        analyzer="char",
        ngram_range=(ngram_size, ngram_size),
        lowercase=False,  # copy_key already case-folds
        preprocessor=copy_key,
        binary=True,
        norm=None,
        alternate_sign=False,
        n_features=n_features,
        dtype=np.float32,
    )
    matrix = vectorizer.transform([str(t) for t in texts]).tocsr()
    matrix.data[:] = 1.0
    return matrix


def nearest_char_ngram_jaccard(
    synthetic_texts: Sequence[str],
    real_texts: Sequence[str],
    ngram_size: int = 5,
    chunk_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """For each synthetic text, the largest Jaccard similarity |A ∩ B| / |A ∪ B| of its character n-gram set
    with a real text's, and that real text's index (-1 when the text has no n-gram: shorter than
    ``ngram_size``; the exact-copy check covers those).
    """
    if len(real_texts) == 0:
        raise ValueError("real_texts is empty: there is no real record to compare with")
    synthetic = char_ngram_vectors(synthetic_texts, ngram_size)
    real = char_ngram_vectors(real_texts, ngram_size)
    synthetic_sizes = np.asarray(synthetic.sum(axis=1)).ravel()
    real_sizes = np.asarray(real.sum(axis=1)).ravel()
    real_t = real.T.tocsc()
    best_jaccard = np.zeros(synthetic.shape[0], dtype=np.float64)
    best_index = np.full(synthetic.shape[0], -1, dtype=np.int64)
    for start in range(0, synthetic.shape[0], chunk_size):
        stop = min(start + chunk_size, synthetic.shape[0])
        intersection = (synthetic[start:stop] @ real_t).toarray()
        union = synthetic_sizes[start:stop, None] + real_sizes[None, :] - intersection
        with np.errstate(divide="ignore", invalid="ignore"):
            jaccard = np.where(union > 0, intersection / union, 0.0)
        index = jaccard.argmax(axis=1)
        value = jaccard[np.arange(stop - start), index]
        has_ngrams = synthetic_sizes[start:stop] > 0
        best_jaccard[start:stop] = np.where(has_ngrams, value, 0.0)
        best_index[start:stop] = np.where(has_ngrams & (value > 0), index, -1)
    return best_jaccard, best_index


def distance_to_closest_record(
    query_embeddings: np.ndarray, reference_embeddings: np.ndarray, chunk_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Distance to closest record: cosine distance ``1 - max cos`` of each query row to the reference rows,
    with the index of that closest reference row."""
    similarity, index = nearest_cosine(query_embeddings, reference_embeddings, chunk_size)
    return np.clip(1.0 - similarity, 0.0, 2.0), index


@dataclass
class PrivacyResult:
    """Per-synthetic-row scores and flags (``rows``) and a JSON-ready summary (``summary``)."""

    rows: pd.DataFrame
    summary: dict

    @property
    def flagged(self) -> pd.DataFrame:
        """Only the flagged rows, the listing for the privacy report."""
        return self.rows[self.rows["flagged"]].reset_index(drop=True)

    @property
    def flagged_ids(self) -> list[str]:
        return self.rows.loc[self.rows["flagged"], "synthetic_id"].astype(str).tolist()


def check_privacy(
    synthetic: pd.DataFrame,
    real_train: pd.DataFrame,
    real_test: pd.DataFrame,
    synthetic_embeddings: np.ndarray,
    real_train_embeddings: np.ndarray,
    real_test_embeddings: np.ndarray,
    thresholds: PrivacyThresholds | None = None,
) -> PrivacyResult:
    """Run the four checks of the module docstring on every synthetic row.

    ``synthetic`` needs ``synthetic_id, text, label``; ``real_train`` / ``real_test`` need ``row_id, text``;
    each embedding array is row-aligned with its DataFrame. The real test set plays two roles: it is part
    of the real data a synthetic row must not copy (checks 1-3), and it is the holdout whose distance to
    the training rows is the DCR baseline (check 4).
    """
    thresholds = thresholds or PrivacyThresholds()
    require_columns(synthetic, ("synthetic_id", "text", "label"), "synthetic")
    require_columns(real_train, ("row_id", "text"), "real_train")
    require_columns(real_test, ("row_id", "text"), "real_test")
    for frame, embeddings, name in (
        (synthetic, synthetic_embeddings, "synthetic"),
        (real_train, real_train_embeddings, "real_train"),
        (real_test, real_test_embeddings, "real_test"),
    ):
        if len(frame) != np.asarray(embeddings).shape[0]:
            raise ValueError(
                f"{name} has {len(frame)} rows but its embeddings have {np.asarray(embeddings).shape[0]}: "
                "embeddings must be row-aligned with their DataFrame"
            )
    if len(real_train) == 0:
        raise ValueError("real_train is empty: privacy checks need the real training rows")

    real = pd.concat(
        [
            real_train[["row_id", "text"]].assign(real_split="train"),
            real_test[["row_id", "text"]].assign(real_split="test"),
        ],
        ignore_index=True,
    )
    real_embeddings = np.vstack([np.asarray(real_train_embeddings), np.asarray(real_test_embeddings)])
    synthetic_texts = synthetic["text"].astype(str).tolist()
    real_texts = real["text"].astype(str).tolist()
    chunk = thresholds.chunk_size

    copy_index = exact_copy_matches(synthetic_texts, real_texts)
    max_cosine, cosine_index = nearest_cosine(synthetic_embeddings, real_embeddings, chunk)
    max_jaccard, jaccard_index = nearest_char_ngram_jaccard(
        synthetic_texts, real_texts, thresholds.char_ngram_size, chunk
    )
    synthetic_dcr, dcr_index = distance_to_closest_record(synthetic_embeddings, real_train_embeddings, chunk)
    if len(real_test) > 0:
        holdout_dcr, _ = distance_to_closest_record(real_test_embeddings, real_train_embeddings, chunk)
    else:
        holdout_dcr = np.zeros(0)

    dcr_cutoff = 1.0 - thresholds.cosine_threshold
    holdout_cutoff = None
    if thresholds.dcr_holdout_quantile is not None and holdout_dcr.size:
        holdout_cutoff = float(np.quantile(holdout_dcr, thresholds.dcr_holdout_quantile))
    low_dcr = synthetic_dcr < dcr_cutoff
    if holdout_cutoff is not None:
        low_dcr |= synthetic_dcr < holdout_cutoff

    flags = {
        FLAG_EXACT_COPY: copy_index >= 0,
        FLAG_EMBEDDING_NEAR_DUPLICATE: max_cosine >= thresholds.cosine_threshold,
        FLAG_CHAR_NGRAM_NEAR_DUPLICATE: max_jaccard >= thresholds.jaccard_threshold,
        FLAG_LOW_DCR: low_dcr,
    }
    flagged = np.zeros(len(synthetic), dtype=bool)
    for mask in flags.values():
        flagged |= mask
    reasons = [";".join(name for name, mask in flags.items() if mask[i]) for i in range(len(synthetic))]
    real_ids = real["row_id"].astype(str).to_numpy()
    train_ids = real_train["row_id"].astype(str).to_numpy()

    def ids_at(index: np.ndarray, ids: np.ndarray) -> list[str | None]:
        return [str(ids[i]) if i >= 0 else None for i in index]

    rows = pd.DataFrame(
        {
            "synthetic_id": synthetic["synthetic_id"].astype(str).to_numpy(),
            "label": synthetic["label"].astype(str).to_numpy(),
            "text": synthetic_texts,
            "flagged": flagged,
            "reasons": reasons,
            "exact_copy_of": ids_at(copy_index, real_ids),
            "max_cosine": max_cosine,
            "nearest_real_id": ids_at(cosine_index, real_ids),
            "nearest_real_text": [real_texts[i] for i in cosine_index],
            "max_char_jaccard": max_jaccard,
            "char_jaccard_nearest_real_id": ids_at(jaccard_index, real_ids),
            "dcr": synthetic_dcr,
            "dcr_nearest_train_id": ids_at(dcr_index, train_ids),
        }
    )
    summary = {
        "n_synthetic": int(len(synthetic)),
        "n_real_train": int(len(real_train)),
        "n_real_holdout": int(len(real_test)),
        "n_flagged": int(flagged.sum()),
        "flagged_fraction": float(flagged.mean()) if len(synthetic) else 0.0,
        "counts": {name: int(mask.sum()) for name, mask in flags.items()},
        "thresholds": {
            "cosine_threshold": thresholds.cosine_threshold,
            "char_ngram_size": thresholds.char_ngram_size,
            "jaccard_threshold": thresholds.jaccard_threshold,
            "dcr_holdout_quantile": thresholds.dcr_holdout_quantile,
            "dcr_absolute_cutoff": dcr_cutoff,
            "dcr_holdout_cutoff": holdout_cutoff,
        },
        "dcr_quantiles": {
            "synthetic": _quantiles(synthetic_dcr, thresholds.report_quantiles),
            "holdout": _quantiles(holdout_dcr, thresholds.report_quantiles),
        },
        "synthetic_closer_than_holdout_median": (
            float(np.mean(synthetic_dcr < np.median(holdout_dcr)))
            if holdout_dcr.size and len(synthetic)
            else None
        ),
    }
    logger.info(
        "Privacy: %d of %d synthetic rows flagged (%s)",
        summary["n_flagged"],
        len(synthetic),
        summary["counts"],
    )
    return PrivacyResult(rows=rows, summary=summary)


def privacy_metrics(summary: dict) -> dict[str, float]:
    """Flat ``name -> number`` view of a ``check_privacy`` summary, for a metrics tracker (MLflow)."""
    metrics: dict[str, float] = {
        "n_synthetic": float(summary["n_synthetic"]),
        "n_flagged": float(summary["n_flagged"]),
        "flagged_fraction": float(summary["flagged_fraction"]),
    }
    for name, count in summary["counts"].items():
        metrics[f"n_{name}"] = float(count)
    for group, quantiles in summary["dcr_quantiles"].items():
        for q, value in quantiles.items():
            if value is not None:
                metrics[f"dcr_{group}_{q}"] = float(value)
    return metrics


def _quantiles(values: np.ndarray, quantiles: Sequence[float]) -> dict[str, float | None]:
    keys = [f"q{round(q * 100):02d}" for q in quantiles]
    if values.size == 0:
        return dict.fromkeys(keys)
    return {key: float(np.quantile(values, q)) for key, q in zip(keys, quantiles, strict=True)}


def _unit_rows(array: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms > 0, norms, 1.0)

"""A/B export and its offline estimate (SynAlign sec. 4.6, "Online A/B Test").

The paper's online test trains the control model on real data only and the experimental model on real data
mixed with SynAlign's distribution-aligned synthetic data (sec. 3.4, resampled by the MMD weights). This
module builds those two training sets, and estimates offline what the online test should see:

- :func:`build_ab_sets`: control = the real training rows; treatment = control + the chosen synthetic
  variant's rows (optionally subsampled to a mixing ratio, by alignment weight), minus the rows the privacy
  checks flagged. Every row has a stable ``example_id``, its ``source`` (real / synthetic), ``method`` and
  ``alignment_weight``.
- :func:`offline_ab_estimate`: the same classifier (logistic regression on frozen sentence embeddings, as in
  the paper's sec. 4.2 evaluation) trained on control and on treatment, scored on the real test rows; the
  accuracy difference gets a paired bootstrap percentile confidence interval (:func:`paired_bootstrap_difference`,
  scipy's ``stats.bootstrap`` with ``paired=True``) and McNemar's exact test on the discordant test rows
  (:func:`mcnemar_exact`, scipy's ``stats.binomtest``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

from synalign_kedro.core.arrays import require_columns
from synalign_kedro.core.classifier import fit_predict_logistic
from synalign_kedro.core.privacy import PrivacyThresholds
from synalign_kedro.core.variants import SYNTHETIC_VARIANTS

logger = logging.getLogger(__name__)

SOURCE_REAL = "real"
SOURCE_SYNTHETIC = "synthetic"
MIXING_SAMPLING = ("uniform", "weight")


class OfflineAbSettings(BaseModel):
    """``ab_export.offline_ab``: the classifier and the paired bootstrap of :func:`offline_ab_estimate`."""

    model_config = ConfigDict(extra="forbid")

    C: float = Field(1.0, gt=0, description="LogisticRegression on frozen embeddings, as in evaluation")
    max_iter: int = Field(2000, ge=1)
    n_bootstrap: int = Field(2000, ge=1, description="paired bootstrap resamples of the test rows")
    confidence: float = Field(0.95, gt=0, lt=1)


class ReportSettings(BaseModel):
    """``ab_export.report``: how much of the synthetic data the run report shows (the tables and figures
    themselves are node inputs, never file paths)."""

    model_config = ConfigDict(extra="forbid")

    examples_per_label: int = Field(3, ge=0)
    max_flagged_rows: int = Field(20, ge=0)


class AbExportSettings(BaseModel):
    """The ``ab_export`` parameter block (SynAlign sec. 4.6); see docs/ab_export.md."""

    model_config = ConfigDict(extra="forbid")

    variant: Literal[SYNTHETIC_VARIANTS] = Field(  # type: ignore[valid-type]
        "synalign_mmd", description="synthetic variant mixed into the treatment (core/variants.py)"
    )
    mixing_ratio: float | None = Field(
        None, ge=0, description="synthetic rows per real row in the treatment; null = every non-flagged row"
    )
    mixing_sampling: Literal[MIXING_SAMPLING] = "uniform"  # type: ignore[valid-type]
    drop_flagged: bool = True
    privacy: PrivacyThresholds = Field(default_factory=PrivacyThresholds)
    offline_ab: OfflineAbSettings = Field(default_factory=OfflineAbSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
EXPORT_COLUMNS = [
    "example_id",
    "text",
    "label",
    "source",
    "method",
    "variant",
    "alignment_weight",
    "origin_id",
]


@dataclass
class AbSets:
    """The two training sets and how the treatment's synthetic part was chosen (``selection``)."""

    control: pd.DataFrame
    treatment: pd.DataFrame
    selection: dict


def control_set(real_train: pd.DataFrame) -> pd.DataFrame:
    """The control arm: every real training row, in the export schema (``EXPORT_COLUMNS``).

    Real rows keep their ``row_id`` as ``example_id``; they have no alignment weight (null).
    """
    require_columns(real_train, ("row_id", "text", "label"), "real_train")
    if real_train["row_id"].duplicated().any():
        duplicated = real_train.loc[real_train["row_id"].duplicated(), "row_id"].head(3).tolist()
        raise ValueError(f"real_train has duplicated row_id values, e.g. {duplicated}; ids must be unique")
    ids = real_train["row_id"].astype(str).to_numpy()
    return pd.DataFrame(
        {
            "example_id": ids,
            "text": real_train["text"].astype(str).to_numpy(),
            "label": real_train["label"].astype(str).to_numpy(),
            "source": SOURCE_REAL,
            "method": SOURCE_REAL,
            "variant": SOURCE_REAL,
            "alignment_weight": np.full(len(real_train), np.nan),
            "origin_id": ids,
        },
        columns=EXPORT_COLUMNS,
    )


def build_ab_sets(
    real_train: pd.DataFrame,
    synthetic: pd.DataFrame,
    variant: str,
    flagged_ids: Sequence[str] = (),
    drop_flagged: bool = True,
    mixing_ratio: float | None = None,
    mixing_sampling: str = "uniform",
    seed: int = 0,
) -> AbSets:
    """Build the control and treatment training sets.

    ``synthetic`` is the variant's set (``synthetic_id, text, label`` and optionally ``method``, ``weight``).
    Steps, in order, for the treatment's synthetic part:

    1. drop the rows whose ``synthetic_id`` is in ``flagged_ids`` (when ``drop_flagged``);
    2. drop rows whose label is not a real training label (a classifier trained on them would predict a
       class the test set does not have);
    3. when ``mixing_ratio`` is set, keep ``round(mixing_ratio * len(real_train))`` rows (all of them if
       fewer remain), drawn without replacement and kept in their original order. ``mixing_sampling``:
       ``"uniform"`` (right for a variant already resampled by weight, such as ``synalign_mmd``: drawing it by
       weight again would count the weights twice) or ``"weight"`` (probability proportional to the alignment
       weight, the paper's sec. 3.4 resampling, for the weighted whole pool ``synalign_all``; uniform when the
       variant has no usable weights).

    A variant resampled *with* replacement (the paper's resampling by weight, sec. 3.4) can hold a
    ``synthetic_id`` several times: the k-th repeat gets ``example_id = "<synthetic_id>~k"``, so ids stay
    unique and stable, and ``origin_id`` keeps the pool's id.
    """
    if mixing_ratio is not None and mixing_ratio < 0:
        raise ValueError(f"mixing_ratio must be >= 0 or null (all rows), got {mixing_ratio}")
    if mixing_sampling not in MIXING_SAMPLING:
        raise ValueError(f"mixing_sampling must be one of {MIXING_SAMPLING}, got {mixing_sampling!r}")
    require_columns(synthetic, ("synthetic_id", "text", "label"), f"synthetic set of variant {variant!r}")
    control = control_set(real_train)
    real_labels = set(control["label"])

    candidates = synthetic.reset_index(drop=True)
    n_variant = len(candidates)
    flagged = {str(i) for i in flagged_ids}
    is_flagged = candidates["synthetic_id"].astype(str).isin(flagged).to_numpy()
    if drop_flagged:
        candidates = candidates[~is_flagged]
    unknown_label = ~candidates["label"].astype(str).isin(real_labels)
    if unknown_label.any():
        logger.warning(
            "Dropping %d synthetic rows whose label is not a real training label: %s",
            int(unknown_label.sum()),
            sorted(candidates.loc[unknown_label, "label"].astype(str).unique())[:5],
        )
    candidates = candidates[~unknown_label.to_numpy()]

    weights = _alignment_weights(candidates)
    n_wanted = None if mixing_ratio is None else int(round(mixing_ratio * len(control)))
    if n_wanted is not None and n_wanted < len(candidates):
        rng = np.random.default_rng(seed)
        probabilities = None
        usable = np.isfinite(weights).all() and (weights > 0).sum() >= n_wanted and weights.sum() > 0
        if mixing_sampling == "weight" and usable:
            probabilities = weights / weights.sum()
        chosen = np.sort(rng.choice(len(candidates), size=n_wanted, replace=False, p=probabilities))
        candidates = candidates.iloc[chosen]
        weights = weights[chosen]
    elif n_wanted is not None and n_wanted > len(candidates):
        logger.warning(
            "mixing_ratio %.3f asks for %d synthetic rows but only %d remain: using all of them",
            mixing_ratio,
            n_wanted,
            len(candidates),
        )

    origin = candidates["synthetic_id"].astype(str)
    repeat = origin.groupby(origin).cumcount().to_numpy()
    example_ids = [o if k == 0 else f"{o}~{k}" for o, k in zip(origin, repeat, strict=True)]
    methods = candidates["method"].astype(str).to_numpy() if "method" in candidates else variant
    synthetic_rows = pd.DataFrame(
        {
            "example_id": example_ids,
            "text": candidates["text"].astype(str).to_numpy(),
            "label": candidates["label"].astype(str).to_numpy(),
            "source": SOURCE_SYNTHETIC,
            "method": methods,
            "variant": variant,
            "alignment_weight": weights,
            "origin_id": origin.to_numpy(),
        },
        columns=EXPORT_COLUMNS,
    )
    # (no concat with an empty frame: its object columns would change the string dtypes of the real part)
    treatment = (
        pd.concat([control, synthetic_rows], ignore_index=True) if len(synthetic_rows) else control.copy()
    )
    if treatment["example_id"].duplicated().any():
        clash = treatment.loc[treatment["example_id"].duplicated(), "example_id"].head(3).tolist()
        raise ValueError(f"a synthetic id equals a real row id, e.g. {clash}; example ids must be unique")
    selection = {
        "variant": variant,
        "n_variant_rows": int(n_variant),
        "n_flagged": int(is_flagged.sum()),
        "n_flagged_dropped": int(is_flagged.sum()) if drop_flagged else 0,
        "n_unknown_label_dropped": int(unknown_label.sum()),
        "mixing_ratio": mixing_ratio,
        "mixing_sampling": mixing_sampling,
        "n_synthetic_in_treatment": int(len(synthetic_rows)),
        "drop_flagged": bool(drop_flagged),
    }
    return AbSets(control=control, treatment=treatment, selection=selection)


def counts_by_label_and_source(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """``{source: {label: count}}`` of an exported set (for the manifest)."""
    counts: dict[str, dict[str, int]] = {}
    for (source, label), count in frame.groupby(["source", "label"]).size().items():
        counts.setdefault(str(source), {})[str(label)] = int(count)
    return counts


def evaluation_row(evaluation_table: pd.DataFrame | None, variant: str) -> dict | None:
    """The evaluation table's row for ``variant`` (column ``variant``; also tried: ``synthetic_<variant>``,
    ``synthetic_pool_<variant>``, case-insensitive), as a dict; None when the table or the row is missing."""
    if evaluation_table is None or "variant" not in getattr(evaluation_table, "columns", ()):
        return None
    names = evaluation_table["variant"].astype(str).str.strip().str.lower()
    for candidate in (variant, f"synthetic_{variant}", f"synthetic_pool_{variant}"):
        match = evaluation_table[names == candidate.lower()]
        if len(match):
            row = match.iloc[0].to_dict()
            return {str(k): _json_scalar(v) for k, v in row.items()}
    return None


def paired_bootstrap_difference(
    correct_treatment: np.ndarray,
    correct_control: np.ndarray,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy difference (treatment - control) on the same test rows, with a paired bootstrap percentile CI.

    Both arms are resampled with the same test-row indices (``scipy.stats.bootstrap(..., paired=True,
    method="percentile")``), so the interval reflects the test-set sampling of the *difference*, not of each
    accuracy separately. When every test row has the same difference (e.g. identical predictions) the
    interval is that single value.
    """
    treatment = _as_correct("correct_treatment", correct_treatment)
    control = _as_correct("correct_control", correct_control)
    if treatment.shape != control.shape:
        raise ValueError(f"the arms were scored on different test sets: {treatment.shape} vs {control.shape}")
    if treatment.size == 0:
        raise ValueError("no test rows to compare the arms on")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    difference = float(treatment.mean() - control.mean())
    per_row = treatment - control
    if np.all(per_row == per_row[0]):
        low = high = difference
    else:
        result = stats.bootstrap(
            (treatment, control),
            lambda t, c, axis: t.mean(axis=axis) - c.mean(axis=axis),
            paired=True,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            batch=256,
            rng=np.random.default_rng(seed),
        )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return {
        "difference": difference,
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "n_resamples": int(n_resamples),
    }


def mcnemar_exact(correct_treatment: np.ndarray, correct_control: np.ndarray) -> dict[str, float]:
    """McNemar's exact test: under H0 (the arms are equally accurate) the discordant test rows split 50/50.

    ``control_only`` = rows only control gets right, ``treatment_only`` = rows only treatment gets right;
    p-value = two-sided exact binomial test of ``treatment_only`` out of the discordant rows
    (``scipy.stats.binomtest``); 1.0 when there is no discordant row.
    """
    treatment = _as_correct("correct_treatment", correct_treatment).astype(bool)
    control = _as_correct("correct_control", correct_control).astype(bool)
    if treatment.shape != control.shape:
        raise ValueError(f"the arms were scored on different test sets: {treatment.shape} vs {control.shape}")
    control_only = int(np.sum(control & ~treatment))
    treatment_only = int(np.sum(treatment & ~control))
    discordant = control_only + treatment_only
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(treatment_only, discordant, 0.5).pvalue)
    return {"control_only": control_only, "treatment_only": treatment_only, "p_value": p_value}


def offline_ab_estimate(
    control_embeddings: np.ndarray,
    control_labels: Sequence,
    treatment_embeddings: np.ndarray,
    treatment_labels: Sequence,
    test_embeddings: np.ndarray,
    test_labels: Sequence,
    C: float = 1.0,
    max_iter: int = 1000,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Offline estimate of the A/B test: the classifier trained on each arm, scored on the real test rows.

    Returns the accuracy and macro-F1 of each arm, the accuracy difference with its paired bootstrap CI, and
    McNemar's exact p-value (see the two functions above).
    """
    truth = np.asarray([str(label) for label in test_labels], dtype=object)
    if len(truth) != np.asarray(test_embeddings).shape[0]:
        raise ValueError("test_embeddings and test_labels must be row-aligned")
    label_set = sorted(set(truth) | {str(label) for label in control_labels})
    predictions = {}
    for arm, embeddings, labels in (
        ("control", control_embeddings, control_labels),
        ("treatment", treatment_embeddings, treatment_labels),
    ):
        predictions[arm] = fit_predict_logistic(embeddings, labels, test_embeddings, C, max_iter, seed)
    correct = {arm: (predicted == truth).astype(np.float64) for arm, predicted in predictions.items()}
    bootstrap = paired_bootstrap_difference(
        correct["treatment"], correct["control"], n_resamples, confidence, seed
    )
    mcnemar = mcnemar_exact(correct["treatment"], correct["control"])
    estimate = {
        "n_test": int(len(truth)),
        "n_train_control": int(np.asarray(control_embeddings).shape[0]),
        "n_train_treatment": int(np.asarray(treatment_embeddings).shape[0]),
    }
    for arm, predicted in predictions.items():
        estimate[f"{arm}_accuracy"] = float(accuracy_score(truth, predicted))
        estimate[f"{arm}_macro_f1"] = float(
            f1_score(truth, predicted, labels=label_set, average="macro", zero_division=0)
        )
    estimate.update(
        {
            "accuracy_difference": bootstrap["difference"],
            "accuracy_difference_ci_low": bootstrap["ci_low"],
            "accuracy_difference_ci_high": bootstrap["ci_high"],
            "confidence": bootstrap["confidence"],
            "n_bootstrap": bootstrap["n_resamples"],
            "mcnemar_control_only": mcnemar["control_only"],
            "mcnemar_treatment_only": mcnemar["treatment_only"],
            "mcnemar_p_value": mcnemar["p_value"],
        }
    )
    return estimate


def ab_metrics(estimate: dict) -> dict[str, float]:
    """Flat ``name -> number`` view of :func:`offline_ab_estimate`, for a metrics tracker (MLflow)."""
    return {key: float(value) for key, value in estimate.items() if isinstance(value, int | float)}


def _json_scalar(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _alignment_weights(frame: pd.DataFrame) -> np.ndarray:
    if "weight" not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame["weight"], errors="coerce").to_numpy(dtype=np.float64)


def _as_correct(name: str, values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold 0/1 (or boolean) per test row")
    return array


def embedding_lookup(
    real_ids: pd.Series,
    real_embeddings: np.ndarray,
    synthetic_ids: pd.Series,
    synthetic_embeddings: np.ndarray,
):
    """A function mapping an export frame (``source``, ``origin_id``) to its embedding rows."""
    real_position = pd.Series(np.arange(len(real_ids)), index=real_ids.to_numpy())
    real_position = real_position[~real_position.index.duplicated()]
    synthetic_position = pd.Series(np.arange(len(synthetic_ids)), index=synthetic_ids.to_numpy())
    synthetic_position = synthetic_position[~synthetic_position.index.duplicated()]

    def embedding_of(frame: pd.DataFrame) -> np.ndarray:
        is_real = (frame["source"] == SOURCE_REAL).to_numpy()
        origin = frame["origin_id"].astype(str)
        missing = sorted(set(origin[is_real]) - set(real_position.index)) + sorted(
            set(origin[~is_real]) - set(synthetic_position.index)
        )
        if missing:
            raise ValueError(
                f"{len(missing)} exported rows have no embedding (unknown origin_id), e.g. {missing[:3]}"
            )
        out = np.empty((len(frame), real_embeddings.shape[1]), dtype=np.float32)
        out[is_real] = real_embeddings[real_position.loc[origin[is_real]].to_numpy()]
        out[~is_real] = synthetic_embeddings[synthetic_position.loc[origin[~is_real]].to_numpy()]
        return out

    return embedding_of

"""Thin nodes of the `ab_export` pipeline (SynAlign sec. 4.6): validate the ``ab_export`` block, make one call
into ``core.privacy`` / ``core.ab_testing`` / ``core.report``."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core import ab_testing, privacy, report
from synalign_kedro.core.ab_testing import AbExportSettings
from synalign_kedro.core.embedding import embed_with_settings
from synalign_kedro.pipelines.tracking import mlflow_metrics

logger = logging.getLogger(__name__)

FLAGGED_COLUMNS = [
    "synthetic_id", "label", "reasons", "text", "nearest_real_text", "max_cosine", "max_char_jaccard", "dcr",
]  # fmt: skip


def select_variant(params: dict[str, Any], **candidates: pd.DataFrame) -> pd.DataFrame:
    """The synthetic set of the configured variant (``ab_export.variant``) among the candidate datasets (Kedro
    node inputs are static, so every variant of the registry is an input). An empty set is an error."""
    variant = AbExportSettings.model_validate(params).variant
    selected = candidates[variant]
    if len(selected) == 0:
        raise ValueError(
            f"the synthetic set of ab_export.variant {variant!r} is empty: a treatment identical to the "
            "control would be exported. Fix the generation (see data/08_reporting/llm_usage_*.json) first"
        )
    logger.info("A/B export variant %s: %d synthetic rows", variant, len(selected))
    return selected


def embed_variant(synthetic: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """Embeddings of the variant's rows (same embedder and content-addressed cache as everywhere)."""
    return embed_with_settings(synthetic["text"].astype(str).tolist(), embedding)


def check_variant_privacy(
    synthetic: pd.DataFrame,
    real_train: pd.DataFrame,
    real_test: pd.DataFrame,
    synthetic_embeddings: np.ndarray,
    real_train_embeddings: np.ndarray,
    real_test_embeddings: np.ndarray,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, list[str], dict, dict]:
    """Privacy checks on every synthetic row: the flagged rows (report), their ids, the summary and the
    MLflow metrics."""
    result = privacy.check_privacy(
        synthetic, real_train, real_test, synthetic_embeddings, real_train_embeddings, real_test_embeddings,
        AbExportSettings.model_validate(params).privacy,
    )  # fmt: skip
    return result.flagged, result.flagged_ids, result.summary, mlflow_metrics(privacy.privacy_metrics(result.summary))


def build_ab_export(
    real_train: pd.DataFrame, synthetic: pd.DataFrame, flagged_ids: list[str], params: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Control and treatment sets, each returned twice (Parquet and JSONL datasets), and the selection
    summary."""
    settings = AbExportSettings.model_validate(params)
    sets = ab_testing.build_ab_sets(
        real_train, synthetic, variant=settings.variant, flagged_ids=flagged_ids,
        drop_flagged=settings.drop_flagged, mixing_ratio=settings.mixing_ratio,
        mixing_sampling=settings.mixing_sampling, seed=seed,
    )  # fmt: skip
    logger.info("A/B export: control %d rows, treatment %d rows (%s)", len(sets.control), len(sets.treatment), sets.selection)
    return sets.control, sets.control, sets.treatment, sets.treatment, sets.selection


def estimate_offline_ab(
    control: pd.DataFrame,
    treatment: pd.DataFrame,
    real_train: pd.DataFrame,
    real_train_embeddings: np.ndarray,
    synthetic: pd.DataFrame,
    synthetic_embeddings: np.ndarray,
    real_test: pd.DataFrame,
    real_test_embeddings: np.ndarray,
    params: dict[str, Any],
    seed: int,
) -> tuple[dict, dict]:
    """Classifier trained on control vs treatment, scored on real test (paired bootstrap CI, McNemar)."""
    options = AbExportSettings.model_validate(params).offline_ab
    embedding_of = ab_testing.embedding_lookup(
        real_train["row_id"].astype(str), real_train_embeddings,
        synthetic["synthetic_id"].astype(str), synthetic_embeddings,
    )  # fmt: skip
    estimate = ab_testing.offline_ab_estimate(
        embedding_of(control), control["label"].astype(str).tolist(),
        embedding_of(treatment), treatment["label"].astype(str).tolist(),
        real_test_embeddings, real_test["label"].astype(str).tolist(),
        C=options.C, max_iter=options.max_iter, n_resamples=options.n_bootstrap,
        confidence=options.confidence, seed=seed,
    )  # fmt: skip
    logger.info(
        "Offline A/B: control %.4f, treatment %.4f, difference %.4f [%.4f, %.4f], McNemar p=%.4g",
        estimate["control_accuracy"], estimate["treatment_accuracy"], estimate["accuracy_difference"],
        estimate["accuracy_difference_ci_low"], estimate["accuracy_difference_ci_high"], estimate["mcnemar_p_value"],
    )  # fmt: skip
    return estimate, mlflow_metrics(ab_testing.ab_metrics(estimate))


def build_manifest(
    control_parquet_file: dict,
    control_jsonl_file: dict,
    treatment_parquet_file: dict,
    treatment_jsonl_file: dict,
    privacy_report_file: dict,
    control: pd.DataFrame,
    treatment: pd.DataFrame,
    selection: dict,
    privacy_summary: dict,
    ab_estimate: dict,
    evaluation_table: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
    dataset: str,
) -> dict:
    """The manifest of this run's export: files (path, version, sha256), counts, parameters, MLflow run id,
    privacy summary, offline A/B estimate and the variant's evaluation metrics.

    The ``*_file`` inputs are ``FileDigestDataset`` entries on the files Kedro has just saved; ``control`` and
    ``treatment`` are loaded back from the saved Parquet (which also orders this node after the export).
    """
    settings = AbExportSettings.model_validate(params)
    files = {
        "control_parquet": {**control_parquet_file, "rows": len(control)},
        "control_jsonl": {**control_jsonl_file, "rows": len(control)},
        "treatment_parquet": {**treatment_parquet_file, "rows": len(treatment)},
        "treatment_jsonl": {**treatment_jsonl_file, "rows": len(treatment)},
        "privacy_report": {**privacy_report_file, "rows": int(privacy_summary["n_flagged"])},
    }
    for entry in files.values():  # Kedro hands absolute paths; keep the manifest portable with the project
        entry["path"] = _relative_to_cwd(entry["path"])
    evaluation = ab_testing.evaluation_row(evaluation_table, settings.variant)
    if evaluation is None:
        logger.warning("The evaluation table has no row for variant %r: manifest 'evaluation' is null", settings.variant)
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dataset": dataset,
        "variant": settings.variant,
        "mlflow_run_id": _active_mlflow_run_id(),
        "parameters": {**settings.model_dump(mode="json"), "seed": seed},
        "files": files,
        "counts": {
            "control": ab_testing.counts_by_label_and_source(control),
            "treatment": ab_testing.counts_by_label_and_source(treatment),
        },
        "selection": selection,
        "privacy": privacy_summary,
        "offline_ab": ab_estimate,
        "evaluation": evaluation,
    }


def build_run_report(
    evaluation_table: pd.DataFrame,
    coverage_curves_plot: bytes,
    evaluation_tsne_plot: bytes,
    alignment_loss_plot: bytes,
    alignment_weights_plot: bytes,
    synthetic: pd.DataFrame,
    real_train: pd.DataFrame,
    privacy_flagged: pd.DataFrame,
    manifest: dict,
    params: dict[str, Any],
    seed: int,
    **llm_usage: dict,
) -> str:
    """The self-contained HTML run report. Every table and figure is a node input (figures as the PNG bytes
    the plot nodes saved in this run), so the report never embeds a stale or missing file."""
    options = AbExportSettings.model_validate(params).report
    privacy_summary = {**manifest["privacy"], "n_dropped": manifest["selection"]["n_flagged_dropped"]}
    exported_synthetic = synthetic
    if manifest["selection"]["drop_flagged"]:  # show what the treatment holds
        flagged = privacy_flagged["synthetic_id"].astype(str)
        exported_synthetic = synthetic[~synthetic["synthetic_id"].astype(str).isin(flagged)]
    mixing_ratio = manifest["parameters"]["mixing_ratio"]
    return report.render_run_report(
        title=f"SynAlign run report: {manifest['dataset']}, variant {manifest['variant']}",
        run_info={
            "created": manifest["created_at"],
            "dataset": manifest["dataset"],
            "A/B variant": manifest["variant"],
            "mixing ratio (synthetic per real row)": (
                "all non-flagged rows of the variant" if mixing_ratio is None else mixing_ratio
            ),
            "MLflow run id": manifest["mlflow_run_id"],
            "control rows": manifest["files"]["control_parquet"]["rows"],
            "treatment rows": manifest["files"]["treatment_parquet"]["rows"],
        },
        evaluation_table=evaluation_table,
        coverage_png=coverage_curves_plot,
        figures={
            "t-SNE of real and synthetic embeddings (evaluation pipeline)": evaluation_tsne_plot,
            "MMD alignment loss (alignment pipeline)": alignment_loss_plot,
        },
        weights_png=alignment_weights_plot,
        privacy_summary=privacy_summary,
        flagged_rows=privacy_flagged[[c for c in FLAGGED_COLUMNS if c in privacy_flagged.columns]],
        ab_estimate=manifest["offline_ab"],
        llm_usage={name.removeprefix("llm_usage_"): usage for name, usage in llm_usage.items()},
        examples=report.examples_by_label(real_train, exported_synthetic, options.examples_per_label, seed),
        max_flagged_rows=options.max_flagged_rows,
    )


def _relative_to_cwd(path: str) -> str:
    """``path`` relative to the working directory (the project root under ``kedro run``) when inside it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _active_mlflow_run_id() -> str | None:
    """The id of the MLflow run kedro-mlflow opened for this ``kedro run``, or None outside a run."""
    try:
        import mlflow

        run = mlflow.active_run()
    except Exception:  # tracking must never break the export
        return None
    return run.info.run_id if run is not None else None

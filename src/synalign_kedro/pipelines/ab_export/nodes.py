"""Thin nodes of the `ab_export` pipeline (SynAlign sec. 4.6): unpack parameters, call
``synalign_kedro.core.privacy`` / ``core.ab_test`` / ``core.report``, return data."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core import ab_test, privacy, report
from synalign_kedro.core.embedding import embed_with_settings

logger = logging.getLogger(__name__)


def select_variant(variant: str, **candidates: pd.DataFrame) -> pd.DataFrame:
    """The synthetic set of the configured variant (``params:ab_export.variant``) among the candidate
    datasets wired in pipeline.py (Kedro node inputs are static, so every candidate is an input)."""
    if variant not in candidates:
        raise ValueError(
            f"ab_export.variant is {variant!r}; it must be one of {sorted(candidates)} "
            "(the variants wired in pipelines/ab_export/pipeline.py)"
        )
    selected = candidates[variant]
    logger.info("A/B export variant %s: %d synthetic rows", variant, len(selected))
    return selected


def embed_variant(synthetic: pd.DataFrame, embedding: dict[str, Any]) -> np.ndarray:
    """Embeddings of the variant's rows (same embedder and content-addressed cache as everywhere, so the
    evaluation pipeline's embedding of the same texts is reused)."""
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
    thresholds = privacy.PrivacyThresholds(
        cosine_threshold=params["cosine_threshold"],
        char_ngram_size=params["char_ngram_size"],
        jaccard_threshold=params["jaccard_threshold"],
        dcr_holdout_quantile=params.get("dcr_holdout_quantile"),
    )
    result = privacy.check_privacy(
        synthetic,
        real_train,
        real_test,
        synthetic_embeddings,
        real_train_embeddings,
        real_test_embeddings,
        thresholds,
    )
    return (
        result.flagged,
        result.flagged_ids,
        result.summary,
        _mlflow_metrics(privacy.privacy_metrics(result.summary)),
    )


def build_ab_export(
    real_train: pd.DataFrame,
    synthetic: pd.DataFrame,
    flagged_ids: list[str],
    params: dict[str, Any],
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Control and treatment sets, each returned twice (Parquet and JSONL datasets), and the selection
    summary."""
    sets = ab_test.build_ab_sets(
        real_train,
        synthetic,
        variant=params["variant"],
        flagged_ids=flagged_ids,
        drop_flagged=params["drop_flagged"],
        mixing_ratio=params.get("mixing_ratio"),
        mixing_sampling=params.get("mixing_sampling", "uniform"),
        seed=seed,
    )
    logger.info(
        "A/B export: control %d rows, treatment %d rows (%s)",
        len(sets.control),
        len(sets.treatment),
        sets.selection,
    )
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
    embedding_of = _embedding_lookup(
        real_train["row_id"].astype(str),
        real_train_embeddings,
        synthetic["synthetic_id"].astype(str),
        synthetic_embeddings,
    )
    estimate = ab_test.offline_ab_estimate(
        embedding_of(control),
        control["label"].astype(str).tolist(),
        embedding_of(treatment),
        treatment["label"].astype(str).tolist(),
        real_test_embeddings,
        real_test["label"].astype(str).tolist(),
        C=params.get("C", 1.0),
        max_iter=params.get("max_iter", 1000),
        n_resamples=params["n_bootstrap"],
        confidence=params["confidence"],
        seed=seed,
    )
    logger.info(
        "Offline A/B: control %.4f, treatment %.4f, difference %.4f [%.4f, %.4f], McNemar p=%.4g",
        estimate["control_accuracy"],
        estimate["treatment_accuracy"],
        estimate["accuracy_difference"],
        estimate["accuracy_difference_ci_low"],
        estimate["accuracy_difference_ci_high"],
        estimate["mcnemar_p_value"],
    )
    return estimate, _mlflow_metrics(ab_test.ab_metrics(estimate))


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
    files = {
        "control_parquet": {**control_parquet_file, "rows": len(control)},
        "control_jsonl": {**control_jsonl_file, "rows": len(control)},
        "treatment_parquet": {**treatment_parquet_file, "rows": len(treatment)},
        "treatment_jsonl": {**treatment_jsonl_file, "rows": len(treatment)},
        "privacy_report": {**privacy_report_file, "rows": int(privacy_summary["n_flagged"])},
    }
    for entry in files.values():  # Kedro hands absolute paths; keep the manifest portable with the project
        entry["path"] = _relative_to_cwd(entry["path"])
    evaluation = ab_test.evaluation_row(evaluation_table, params["variant"])
    if evaluation is None:
        logger.warning(
            "The evaluation table has no row for variant %r: manifest 'evaluation' is null", params["variant"]
        )
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dataset": dataset,
        "variant": params["variant"],
        "mlflow_run_id": _active_mlflow_run_id(),
        "parameters": {**params, "seed": seed},
        "files": files,
        "counts": {
            "control": ab_test.counts_by_label_and_source(control),
            "treatment": ab_test.counts_by_label_and_source(treatment),
        },
        "selection": selection,
        "privacy": privacy_summary,
        "offline_ab": ab_estimate,
        "evaluation": evaluation,
    }


def build_run_report(
    evaluation_table: pd.DataFrame,
    synthetic_synalign_all: pd.DataFrame,
    synthetic: pd.DataFrame,
    real_train: pd.DataFrame,
    privacy_flagged: pd.DataFrame,
    manifest: dict,
    params: dict[str, Any],
    seed: int,
    **llm_usage: dict,
) -> str:
    """The self-contained HTML run report. Optional upstream outputs (the coverage table, the PNGs matched by
    the glob patterns ``params["figures"][i]["path"]``) are read here by path and shown as "not available"
    when missing, so a run without them still gets its report."""
    coverage_png = report.coverage_png_from_csv(params.get("coverage_table"))
    figures = report.collect_figures(params.get("figures") or [])
    weights_png = None
    if "weight" in synthetic_synalign_all:
        weights_png = report.figure_png(report.weights_histogram(synthetic_synalign_all["weight"].to_numpy()))
    privacy_summary = {**manifest["privacy"], "n_dropped": manifest["selection"]["n_flagged_dropped"]}
    exported_synthetic = synthetic
    if manifest["selection"]["drop_flagged"]:  # show what the treatment holds
        exported_synthetic = synthetic[
            ~synthetic["synthetic_id"].astype(str).isin(privacy_flagged["synthetic_id"].astype(str))
        ]
    flagged_columns = [
        "synthetic_id",
        "label",
        "reasons",
        "text",
        "nearest_real_text",
        "max_cosine",
        "max_char_jaccard",
        "dcr",
    ]
    html = report.render_run_report(
        title=f"SynAlign run report: {manifest['dataset']}, variant {manifest['variant']}",
        run_info={
            "created": manifest["created_at"],
            "dataset": manifest["dataset"],
            "A/B variant": manifest["variant"],
            "mixing ratio (synthetic per real row)": (
                "all non-flagged rows of the variant"
                if manifest["parameters"].get("mixing_ratio") is None
                else manifest["parameters"]["mixing_ratio"]
            ),
            "MLflow run id": manifest["mlflow_run_id"],
            "control rows": manifest["files"]["control_parquet"]["rows"],
            "treatment rows": manifest["files"]["treatment_parquet"]["rows"],
            "manifest": "data/08_reporting/ab_export/manifest.json",
        },
        evaluation_table=evaluation_table,
        coverage_png=coverage_png,
        figures=figures,
        weights_png=weights_png,
        privacy_summary=privacy_summary,
        flagged_rows=privacy_flagged[[c for c in flagged_columns if c in privacy_flagged.columns]],
        ab_estimate=manifest["offline_ab"],
        llm_usage={name.removeprefix("llm_usage_"): usage for name, usage in llm_usage.items()},
        examples=report.examples_by_label(
            real_train, exported_synthetic, params.get("examples_per_label", 3), seed
        ),
        max_flagged_rows=params.get("max_flagged_rows", 20),
    )
    return html


def _embedding_lookup(
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
        is_real = (frame["source"] == ab_test.SOURCE_REAL).to_numpy()
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


def _relative_to_cwd(path: str) -> str:
    """``path`` relative to the working directory (the project root under ``kedro run``) when inside it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _mlflow_metrics(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """``MlflowMetricsHistoryDataset`` format: ``{name: {"value": v, "step": 0}}`` (finite values only)."""
    return {name: {"value": float(value), "step": 0} for name, value in metrics.items() if np.isfinite(value)}


def _active_mlflow_run_id() -> str | None:
    """The id of the MLflow run kedro-mlflow opened for this ``kedro run``, or None outside a run."""
    try:
        import mlflow

        run = mlflow.active_run()
    except Exception:  # tracking must never break the export
        return None
    return run.info.run_id if run is not None else None

"""Thin nodes: validate the ``structured_records`` parameters, one call into ``core.structured.run``."""

from __future__ import annotations

import pandas as pd

from synalign_kedro.core.structured.run import (
    StructuredRecordsParams,
    convergence_figure,
    evaluate_methods,
    load_target,
    run_baseline,
    synthesize,
    trace_metrics,
)


def build_target_statistics(source: pd.DataFrame | dict, params: dict) -> dict:
    """S_target as JSON (marginals, bins, joint tables): what the LLM is aligned to."""
    return load_target(source, StructuredRecordsParams.model_validate(params)).to_dict()


def synthesize_records(source: pd.DataFrame | dict, params: dict, llm: dict):
    """LLMSynthor's records, its per-iteration trace (also as MLflow histories), plans and report."""
    result = synthesize(source, StructuredRecordsParams.model_validate(params), llm)
    return result.records, result.trace, trace_metrics(result.trace), result.plans, result.report


def generate_baseline(source: pd.DataFrame | dict, params: dict, llm: dict, baseline: str) -> tuple[pd.DataFrame, dict]:
    config = StructuredRecordsParams.model_validate(params)
    if baseline not in config.baselines:
        return pd.DataFrame(columns=[v["name"] for v in config.variables or []]), {"skipped": "not in structured_records.baselines"}
    return run_baseline(baseline, source, config, llm, config.synthor.seed)


def evaluate_structured_records(source: pd.DataFrame | dict, params: dict, llmsynthor: pd.DataFrame, *baselines: pd.DataFrame) -> pd.DataFrame:
    config = StructuredRecordsParams.model_validate(params)
    from .pipeline import BASELINES

    records = {"llmsynthor": llmsynthor, **dict(zip(BASELINES, baselines, strict=True))}
    return evaluate_methods(source, config, records)


def plot_convergence(trace: pd.DataFrame):
    return convergence_figure(trace)

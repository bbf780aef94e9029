"""Thin nodes: validate the ``structured_records`` parameters, one call into ``core.structured.run``."""

from __future__ import annotations

import pandas as pd

from synalign_kedro.core.structured.report import render_structured_report
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


def build_structured_report(
    target_statistics: dict,
    trace: pd.DataFrame,
    synthor_report: dict,
    evaluation: pd.DataFrame,
    params: dict,
    llmsynthor: pd.DataFrame,
    **baselines: pd.DataFrame | dict,
) -> str:
    """The self-contained HTML run report (core/structured/report.py): the answer, the convergence plot, one
    target-vs-synthetic panel per variable, the details. ``baselines``: ``records_<name>`` and ``report_<name>``
    per baseline; a baseline not in ``structured_records.baselines`` is left out."""
    from .pipeline import BASELINES

    config = StructuredRecordsParams.model_validate(params)
    ran = [name for name in BASELINES if name in config.baselines]
    records = {"llmsynthor": llmsynthor, **{name: baselines[f"records_{name}"] for name in ran}}
    reports = {name: baselines[f"report_{name}"] for name in ran}
    return render_structured_report(
        title=f"LLMSynthor run report: {config.source_name}",
        target_statistics=target_statistics,
        records=records,
        trace=trace,
        synthor_report=synthor_report,
        baseline_reports=reports,
        evaluation=evaluation,
        run_info={
            "input": config.source_name,
            "records asked (n_records)": config.synthor.n_records,
            "iterations (T)": config.synthor.n_iterations,
            "baselines": ", ".join(ran) or "none",
        },
    )

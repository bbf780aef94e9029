"""One entry point per pipeline step (the Kedro nodes and the benchmark call these): validated parameters,
the target from a table or from aggregates, LLMSynthor, the baselines, the evaluation and the convergence
plot."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from ..llm_client import LLMClient, LLMSettings, cache_identity, open_cache  # noqa: E402
from ..llm_server import resolve_endpoint  # noqa: E402
from . import baselines, ecommerce  # noqa: E402
from .discrepancy import trace_row  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .statistics import TargetStatistics, target_from_dict, target_from_table  # noqa: E402
from .synthor import SynthorConfig, SynthorResult, run_llmsynthor  # noqa: E402

logger = logging.getLogger(__name__)

BASELINES = ("independent_marginals", "ipf", "gaussian_copula", "llm_icl")
DERIVED_LABELS = {"ecommerce": ecommerce.derived_labels}


class ICLConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_calls: int = Field(4, ge=1, description="LLM calls; on 2 CPU cores each record costs ~45 tokens")
    records_per_call: int = Field(20, ge=1, description="records asked per call (the context holds the statistics)")


class IPFConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    convergence_rate: float = Field(1e-12, gt=0, description="tight: the fitted table matches every target table")
    max_iteration: int = Field(2000, ge=1)


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: dict[str, list[str]] = Field(default_factory=dict, description="joint groups for JSD and the C2ST gap")
    rules: dict[str, str] = Field(default_factory=dict, description="pandas queries selecting implausible records")
    derived_labels: Literal["ecommerce"] | None = Field(None, description="label function for train-on-synthetic")
    column_names: dict[str, str] = Field(default_factory=dict, description="short names of the metric columns")
    seed: int = 0


class StructuredRecordsParams(BaseModel):
    """The ``structured_records`` parameter block (conf/base/parameters_structured_records.yml)."""

    model_config = ConfigDict(extra="forbid")

    source_name: str = Field("structured_source", description="named in error messages")
    variables: list[dict[str, Any]] | None = Field(None, description="None: taken from the aggregates file")
    joints: list[list[str]] = Field(default_factory=list, description="joint tables computed from a real table")
    n_main_bins: int = Field(6, ge=1, description="quantile main bins, 6 [paper]")
    n_sub_bins: int = Field(8, ge=1, description="sub-bins of the refined bin, 8 [paper]")
    synthor: SynthorConfig = Field(default_factory=SynthorConfig)
    checkpoint_dir: str | None = Field("data/02_intermediate/structured_checkpoints", description="per-iteration resume")
    baselines: list[Literal["independent_marginals", "ipf", "gaussian_copula", "llm_icl"]] = list(BASELINES)
    ipf: IPFConfig = Field(default_factory=IPFConfig)
    llm_icl: ICLConfig = Field(default_factory=ICLConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)


def load_target(source: pd.DataFrame | dict, params: StructuredRecordsParams) -> TargetStatistics:
    """S_target from a real table (computed; joints from ``params.joints``) or from aggregates (YAML / JSON)."""
    if isinstance(source, pd.DataFrame):
        if params.variables is None:
            raise ValueError(f"{params.source_name}: a table input needs `structured_records.variables`")
        return target_from_table(source, params.variables, params.joints, params.n_main_bins, params.n_sub_bins, params.source_name)
    return target_from_dict(source, params.variables, params.source_name)


@contextmanager
def llm_client(llm: dict):
    """The project's one LLM client, opened the way the generation nodes open it (cache, lazy endpoint)."""
    settings = LLMSettings.model_validate(llm)
    cache = open_cache(settings)
    try:
        # resolve_endpoint runs in this thread and only when some call is not cached
        yield LLMClient(settings, cache_identity(settings), lambda: resolve_endpoint(llm), cache)
    finally:
        cache.close()


def synthesize(source, params: StructuredRecordsParams, llm: dict) -> SynthorResult:
    target = load_target(source, params)
    with llm_client(llm) as client:
        return run_llmsynthor(client, target, params.synthor, params.checkpoint_dir)


def run_baseline(name: str, source, params: StructuredRecordsParams, llm: dict | None, seed: int) -> tuple[pd.DataFrame, dict]:
    """One baseline's records (``params.synthor.n_records`` of them, except LLM-ICL) and a small report."""
    target = load_target(source, params)
    n = params.synthor.n_records
    if name == "independent_marginals":
        return baselines.independent_marginals(target, n, seed), {}
    if name == "ipf":
        return baselines.ipf(target, n, seed, **params.ipf.model_dump()), {}
    if name == "gaussian_copula":
        if target.reference is None:
            logger.warning("gaussian_copula skipped: it needs a real table, the input has only aggregates")
            return baselines.empty_records(target.variables), {"skipped": "needs a real table"}
        return baselines.gaussian_copula(target.reference, target.variables, n, seed), {}
    if name == "llm_icl":
        if llm is None:
            raise ValueError("llm_icl needs the `llm` parameters")
        with llm_client(llm) as client:
            return baselines.llm_icl(client, target, params.llm_icl.n_calls, params.llm_icl.records_per_call, params.synthor.record_noun, seed_offset=1000 * seed)
    raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")


def evaluate_methods(source, params: StructuredRecordsParams, records: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per method: every §4.1 metric against the real table, or, with aggregates only, the distances
    to the target (TVD per variable, JSD per joint, W1 to the target histogram)."""
    target = load_target(source, params)
    config = params.evaluation
    rows = []
    for method, table in records.items():
        if target.reference is not None:
            groups = {k: tuple(v) for k, v in config.groups.items()}
            labels = DERIVED_LABELS[config.derived_labels] if config.derived_labels else None
            metrics = evaluate(target.reference, table, target, groups, config.rules, labels, config.column_names, config.seed)
        else:
            metrics = trace_row(target, table, target.statistics(table, refine_marginals=False)) if len(table) else {}
            metrics["n_records"] = float(len(table))
        rows.append({"method": method, **metrics})
    return pd.DataFrame(rows)


def trace_metrics(trace: pd.DataFrame) -> dict[str, list[dict]]:
    """The trace as MLflow metric histories (kedro_mlflow MlflowMetricsHistoryDataset), step = iteration."""
    out: dict[str, list[dict]] = {}
    for column in trace.columns:
        if column == "iteration" or not pd.api.types.is_numeric_dtype(trace[column]):
            continue
        points = [{"value": float(v), "step": int(t)} for t, v in zip(trace["iteration"], trace[column], strict=True) if np.isfinite(v)]
        if points:
            out[column] = points
    return out


def convergence_figure(trace: pd.DataFrame):
    """TVD (mean over variables), JSD (mean over joints) and W1 per numeric variable by iteration (cf. the
    paper's convergence figure, ICLR Fig. 10)."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if len(trace):
        t = trace["iteration"]
        for column in [c for c in trace.columns if c.startswith("tvd.")]:
            axes[0].plot(t, trace[column], alpha=0.35, lw=1)
        axes[0].plot(t, trace["tvd_mean"], color="black", lw=2, label="mean TVD")
        axes[0].plot(t, trace["discrepancy_l1"], color="tab:red", ls="--", lw=1.5, label="discrepancy (all tables)")
        for column in [c for c in trace.columns if c.startswith("jsd.")]:
            axes[1].plot(t, trace[column], lw=1.5, label=column[4:].replace("__", " x "))
        for column in [c for c in trace.columns if c.startswith("wasserstein.")]:
            axes[2].plot(t, trace[column], lw=1.5, label=column[12:])
    for ax, title in zip(axes, ("marginal TVD to target", "joint JSD to target (bits)", "W1 to target histogram"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figure.tight_layout()
    return figure

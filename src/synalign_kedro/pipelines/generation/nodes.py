"""Thin nodes: validate the ``generation`` and ``llm`` blocks, make one call into ``core.generation``."""

from __future__ import annotations

from functools import partial, update_wrapper
from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core.embedding import embed_with_settings
from synalign_kedro.core.generation import (
    GenerationSettings,
    generate_pool,
    llm_for_dataset,
    merge_prompts,
    prompts_for_dataset,
)
from synalign_kedro.core.llm_client import LLMClient, LLMSettings, cache_identity, open_cache
from synalign_kedro.core.llm_server import resolve_endpoint
from synalign_kedro.core.plots import feedback_trace_figure, figure_png
from synalign_kedro.pipelines.tracking import mlflow_metrics


def select_prompts(dataset: str, parameters: dict[str, Any]) -> dict:
    """``prompts_<dataset>`` merged over ``prompts_default`` for the active ``dataset``."""
    return prompts_for_dataset(dataset, parameters).model_dump()


def generate_synthetic_pool(
    method: str,
    dataset_profile: dict,
    real_train: pd.DataFrame,
    prompts: dict,
    generation: dict,
    llm: dict,
    seed: int,
    demonstration_batches: pd.DataFrame | None = None,
    real_train_embeddings: np.ndarray | None = None,
    embedding: dict | None = None,
) -> tuple[pd.DataFrame, dict, dict]:
    """One method's synthetic pool, its LLM usage report, and the usage as MLflow metrics."""
    config = GenerationSettings.model_validate(generation).method_config(method, seed)
    llm = llm_for_dataset(llm, dataset_profile)
    settings = LLMSettings.model_validate(llm)
    templates = merge_prompts(prompts, None)
    embed = None if embedding is None else partial(embed_with_settings, settings=embedding)
    cache = open_cache(settings)
    try:
        # resolve_endpoint runs in this (the node's) thread and only when some call is not cached
        client = LLMClient(
            settings, cache_identity(settings), lambda: resolve_endpoint(llm), cache, templates.reask
        )
        pool, report = generate_pool(
            client, config, templates, dataset_profile, real_train, demonstration_batches,
            real_train_embeddings, embed,
        )  # fmt: skip
    finally:
        cache.close()
    return pool, report, mlflow_metrics(report)


def method_node_function(method: str):
    """:func:`generate_synthetic_pool` bound to ``method`` (its other inputs are passed by name)."""
    bound = partial(generate_synthetic_pool, method)
    update_wrapper(bound, generate_synthetic_pool)
    bound.__name__ = f"generate_{method}_pool"
    return bound


def plot_feedback_trace(usage: dict) -> bytes:
    """The feedback loop's gap and tokens per round (``synalign_feedback``'s usage report) as a PNG."""
    return figure_png(feedback_trace_figure(usage.get("feedback", {}).get("trace", [])))

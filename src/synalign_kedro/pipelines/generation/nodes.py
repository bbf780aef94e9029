"""Thin nodes: validate the ``generation`` and ``llm`` blocks, make one call into ``core.generation``."""

from __future__ import annotations

from functools import partial, update_wrapper
from typing import Any

import pandas as pd

from synalign_kedro.core.generation import (
    GenerationSettings,
    generate_pool,
    merge_prompts,
    prompts_for_dataset,
)
from synalign_kedro.core.llm_client import LLMClient, LLMSettings, cache_identity, open_cache
from synalign_kedro.core.llm_server import resolve_endpoint
from synalign_kedro.pipelines.tracking import mlflow_metrics


def select_prompts(dataset: str, parameters: dict[str, Any]) -> dict:
    """``prompts_<dataset>`` merged over ``prompts_default`` for the active ``dataset``."""
    return prompts_for_dataset(dataset, parameters).model_dump()


def generate_synthetic_pool(
    method: str,
    demonstration_batches: pd.DataFrame | None,
    dataset_profile: dict,
    real_train: pd.DataFrame,
    prompts: dict,
    generation: dict,
    llm: dict,
    seed: int,
) -> tuple[pd.DataFrame, dict, dict]:
    """One method's synthetic pool, its LLM usage report, and the usage as MLflow metrics."""
    config = GenerationSettings.model_validate(generation).method_config(method, seed)
    settings = LLMSettings.model_validate(llm)
    templates = merge_prompts(prompts, None)
    cache = open_cache(settings)
    try:
        # resolve_endpoint runs in this (the node's) thread and only when some call is not cached
        client = LLMClient(
            settings, cache_identity(settings), lambda: resolve_endpoint(llm), cache, templates.reask
        )
        pool, report = generate_pool(client, config, templates, dataset_profile, real_train, demonstration_batches)
    finally:
        cache.close()
    return pool, report, mlflow_metrics(report)


def method_node_function(method: str, with_demonstrations: bool):
    """:func:`generate_synthetic_pool` bound to ``method``; without the ``demonstration_batches`` input for the
    methods that use none, so they do not wait for the exploration pipeline."""
    if with_demonstrations:
        bound = partial(generate_synthetic_pool, method)
    else:
        bound = partial(generate_synthetic_pool, method, None)
    update_wrapper(bound, generate_synthetic_pool)
    bound.__name__ = f"generate_{method}_pool"
    return bound

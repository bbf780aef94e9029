"""Thin nodes: unpack parameters, call ``core.generation``, return data."""

from __future__ import annotations

import pandas as pd

from synalign_kedro.core.generation import GenerationConfigError, MethodConfig, generate_pool, merge_prompts
from synalign_kedro.core.llm_client import LLMClient, LLMSettings, cache_identity, open_cache
from synalign_kedro.core.llm_server import resolve_endpoint


def select_prompts(parameters: dict) -> dict:
    """``prompts_<dataset>`` merged over ``prompts_default`` for the active ``dataset``."""
    dataset = parameters.get("dataset")
    if not dataset:
        raise GenerationConfigError("parameter `dataset` is not set")
    return merge_prompts(
        parameters.get("prompts_default") or {}, parameters.get(f"prompts_{dataset}")
    ).model_dump()


def generate_synthetic_pool(
    demonstration_batches: pd.DataFrame,
    dataset_profile: dict,
    real_train: pd.DataFrame,
    prompts: dict,
    generation: dict,
    method: dict,
    llm: dict,
    seed: int,
) -> tuple[pd.DataFrame, dict, dict]:
    """One method's synthetic pool, its LLM usage report, and the usage as MLflow metrics."""
    common = {key: value for key, value in generation.items() if key != "methods"}
    config = MethodConfig.model_validate({**common, "seed": seed, **method})
    settings = LLMSettings.model_validate(llm)
    templates = merge_prompts(prompts, None)
    cache = open_cache(settings)
    try:
        # resolve_endpoint runs in this (the node's) thread and only when some call is not cached
        client = LLMClient(
            settings, cache_identity(settings), lambda: resolve_endpoint(llm), cache, templates.reask
        )
        pool, report = generate_pool(
            client, config, templates, dataset_profile, real_train, demonstration_batches
        )
    finally:
        cache.close()
    metrics = {
        name: {"value": float(value), "step": 0}
        for name, value in report.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return pool, report, metrics

"""Synthetic data generation: SynAlign's Latent Attribute Reasoning and the baselines (paper sec. 3.3, 4.1).

Methods (all produce ``n_samples`` rows, so they are compared at equal size), one module each in
:mod:`.methods`: ``synalign`` (sec. 3.3, eq. 6-7), ``synalign_one_stage`` (the ablation of table 4),
``simprompt`` and ``attrprompt`` (the baselines of sec. 4.1).

- :mod:`.config`: the ``generation`` settings and the prompt templates;
- :mod:`.prompts`: rendering the templates of ``conf/base/parameters_prompts_<dataset>.yml`` (never strings
  in code);
- :mod:`.answers`: answer schemas and their validation (re-asks, salvage);
- :mod:`.planning`: the call budget; labels follow the label frequencies of the real training data;
- :mod:`.context`: the per-run context every method works with, and the samples call;
- :mod:`.pool`: :func:`generate_pool`, the one entry point of the generation node.
"""

from .answers import SampleSet, duplicate_key, is_placeholder, summary_model
from .config import (
    GenerationConfigError,
    GenerationSettings,
    GenerationShortfallError,
    MethodConfig,
    PromptTemplates,
    llm_for_dataset,
    merge_prompts,
    prompts_for_dataset,
)
from .context import POOL_COLUMNS, GenerationContext
from .planning import allocate_by_frequency, call_sizes, plan_demonstration_calls
from .pool import generate_pool
from .prompts import render, word_count_description

__all__ = [
    "POOL_COLUMNS",
    "GenerationConfigError",
    "GenerationContext",
    "GenerationSettings",
    "GenerationShortfallError",
    "MethodConfig",
    "PromptTemplates",
    "SampleSet",
    "allocate_by_frequency",
    "call_sizes",
    "duplicate_key",
    "generate_pool",
    "is_placeholder",
    "llm_for_dataset",
    "merge_prompts",
    "plan_demonstration_calls",
    "prompts_for_dataset",
    "render",
    "summary_model",
    "word_count_description",
]

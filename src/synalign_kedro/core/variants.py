"""The one registry of generation methods and synthetic variants, and the catalog names of their datasets.

The pipelines (generation, alignment, evaluation, ab_export), the catalog's dataset factories
(``synthetic_pool_{method}``, ``llm_usage_{method}``, ``synthetic_{variant}``), the parameter models
(``generation.methods`` keys, ``ab_export.variant``) and the run report all read these tuples; adding a method
means adding it here and registering its implementation in :mod:`.generation.methods`.

- A *method* generates a synthetic pool (SynAlign sec. 3.3 and the baselines of sec. 4.1).
- A *variant* is a synthetic set evaluated against real data (sec. 4.1): the raw pool of a baseline method,
  or one of SynAlign's aligned sets built from the ``synalign`` pool (sec. 3.4); ``gold`` adds no synthetic row.
"""

from __future__ import annotations

# Generation methods, in the order of the paper's tables, then ours: synalign_feedback (issue 15: SynAlign
# generation that asks, round by round, for the regions of the real data its pool lacks).
GENERATION_METHODS: tuple[str, ...] = ("simprompt", "attrprompt", "synalign_one_stage", "synalign", "synalign_feedback")
# The methods whose prompts show demonstration batches (exploration, sec. 3.2): only these wait on it.
DEMONSTRATION_METHODS: tuple[str, ...] = ("synalign_one_stage", "synalign", "synalign_feedback")
# The methods that measure their own pool against the real embeddings while generating (they also take
# real_train_embeddings and the embedding settings).
EMBEDDING_METHODS: tuple[str, ...] = ("synalign_feedback",)
# The method whose pool the alignment pipeline weighs (sec. 3.4), and the variants it builds from it.
ALIGNED_METHOD = "synalign"
ALIGNED_VARIANTS: tuple[str, ...] = ("synalign_all", "synalign_random", "synalign_mmd")
# The variant with no synthetic rows (real train only).
GOLD = "gold"
# Every evaluated variant, in table order: gold, the baseline pools, then SynAlign's aligned sets.
SYNTHETIC_VARIANTS: tuple[str, ...] = (
    *(method for method in GENERATION_METHODS if method != ALIGNED_METHOD),
    *ALIGNED_VARIANTS,
)
EVALUATION_VARIANTS: tuple[str, ...] = (GOLD, *SYNTHETIC_VARIANTS)


def pool_dataset(method: str) -> str:
    """Catalog name of a method's generated pool (factory ``synthetic_pool_{method}``)."""
    _check(method, GENERATION_METHODS, "generation method")
    return f"synthetic_pool_{method}"


def usage_dataset(method: str) -> str:
    """Catalog name of a method's LLM usage report (factory ``llm_usage_{method}``)."""
    _check(method, GENERATION_METHODS, "generation method")
    return f"llm_usage_{method}"


def usage_metrics_dataset(method: str) -> str:
    """Catalog name of a method's LLM usage as MLflow metrics (factory ``llm_usage_metrics_{method}``)."""
    _check(method, GENERATION_METHODS, "generation method")
    return f"llm_usage_metrics_{method}"


def variant_dataset(variant: str) -> str:
    """Catalog name of the synthetic set a variant adds to real train: the pool of a baseline method
    (``synthetic_pool_{method}``) or an aligned set (``synthetic_{variant}``)."""
    _check(variant, SYNTHETIC_VARIANTS, "synthetic variant")
    if variant in GENERATION_METHODS:
        return pool_dataset(variant)
    return f"synthetic_{variant}"


def _check(name: str, known: tuple[str, ...], what: str) -> None:
    if name not in known:
        raise ValueError(f"unknown {what} {name!r}; known: {list(known)} (core/variants.py)")

"""Wiring: one node per method of the registry (``core/variants.py``), each under its own namespace.

``kedro run --pipeline generation`` runs all four methods; ``kedro run --namespaces synalign`` runs one.
Outputs follow the catalog's dataset factories: ``synthetic_pool_<method>``, ``llm_usage_<method>`` and
``llm_usage_metrics_<method>``. Only the methods that show demonstrations (``DEMONSTRATION_METHODS``) take
``demonstration_batches`` as an input.
"""

from kedro.pipeline import Node, Pipeline

from synalign_kedro.core.variants import (
    DEMONSTRATION_METHODS,
    GENERATION_METHODS,
    pool_dataset,
    usage_dataset,
    usage_metrics_dataset,
)

from .nodes import method_node_function, select_prompts


def method_pipeline(method: str) -> Pipeline:
    uses_demonstrations = method in DEMONSTRATION_METHODS
    inputs = ["dataset_profile", "real_train", f"{method}.prompts", "params:generation", "params:llm", "params:seed"]
    return Pipeline(
        [
            Node(
                select_prompts,
                inputs=["params:dataset", "parameters"],
                outputs=f"{method}.prompts",
                name="select_prompts",
                namespace=method,
            ),
            Node(
                method_node_function(method, uses_demonstrations),
                inputs=(["demonstration_batches"] if uses_demonstrations else []) + inputs,
                outputs=[pool_dataset(method), usage_dataset(method), usage_metrics_dataset(method)],
                name="generate_synthetic_pool",
                namespace=method,
                tags=["llm"],
            ),
        ],
        tags=[method],
    )


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([method_pipeline(method) for method in GENERATION_METHODS], tags=["generation"])

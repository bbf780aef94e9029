"""Wiring: one node per method of the registry (``core/variants.py``), each under its own namespace.

``kedro run --pipeline generation`` runs all four methods; ``kedro run --namespaces synalign`` runs one.
Outputs follow the catalog's dataset factories: ``synthetic_pool_<method>``, ``llm_usage_<method>`` and
``llm_usage_metrics_<method>``. Only the methods that show demonstrations (``DEMONSTRATION_METHODS``) take
``demonstration_batches`` as an input; the methods that measure their own pool (``EMBEDDING_METHODS``:
synalign_feedback) also take ``real_train_embeddings`` and ``params:embedding``, and plot their rounds
(``synalign_feedback.feedback_trace_plot``).
"""

from kedro.pipeline import Node, Pipeline

from synalign_kedro.core.variants import (
    DEMONSTRATION_METHODS,
    EMBEDDING_METHODS,
    GENERATION_METHODS,
    pool_dataset,
    usage_dataset,
    usage_metrics_dataset,
)

from .nodes import method_node_function, plot_feedback_trace, select_prompts


def method_pipeline(method: str) -> Pipeline:
    inputs = {
        "dataset_profile": "dataset_profile", "real_train": "real_train", "prompts": f"{method}.prompts",
        "generation": "params:generation", "llm": "params:llm", "seed": "params:seed",
    }  # fmt: skip
    if method in DEMONSTRATION_METHODS:
        inputs["demonstration_batches"] = "demonstration_batches"
    if method in EMBEDDING_METHODS:
        inputs |= {"real_train_embeddings": "real_train_embeddings", "embedding": "params:embedding"}
    nodes = [
        Node(
            select_prompts,
            inputs=["params:dataset", "parameters"],
            outputs=f"{method}.prompts",
            name="select_prompts",
            namespace=method,
        ),
        Node(
            method_node_function(method),
            inputs=inputs,
            outputs=[pool_dataset(method), usage_dataset(method), usage_metrics_dataset(method)],
            name="generate_synthetic_pool",
            namespace=method,
            tags=["llm"],
        ),
    ]
    if method in EMBEDDING_METHODS:
        nodes.append(
            Node(
                plot_feedback_trace,
                inputs=usage_dataset(method),
                outputs=f"{method}.feedback_trace_plot",
                name="plot_feedback_trace",
                namespace=method,
            )
        )
    return Pipeline(nodes, tags=[method])


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([method_pipeline(method) for method in GENERATION_METHODS], tags=["generation"])

"""Wiring: one template pipeline, instantiated once per method under its namespace.

``kedro run --pipeline generation`` runs all four methods; ``kedro run --namespaces synalign`` runs one.
Outputs are mapped to ``synthetic_pool_<method>``, ``llm_usage_<method>`` and ``llm_usage_metrics_<method>``.
"""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import generate_synthetic_pool, select_prompts

METHODS = ("simprompt", "attrprompt", "synalign_one_stage", "synalign")


def create_template() -> Pipeline:
    return Pipeline(
        [
            node(select_prompts, inputs="parameters", outputs="prompts", name="select_prompts"),
            node(
                generate_synthetic_pool,
                inputs=[
                    "demonstration_batches",
                    "dataset_profile",
                    "real_train",
                    "prompts",
                    "params:generation",
                    "params:generation_method",
                    "params:llm",
                    "params:seed",
                ],
                outputs=["synthetic_pool", "llm_usage", "llm_usage_metrics"],
                name="generate_synthetic_pool",
                tags=["llm"],
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    template = create_template()
    return sum(
        (
            pipeline(
                template,
                namespace=method,
                inputs={"demonstration_batches", "dataset_profile", "real_train"},
                outputs={
                    "synthetic_pool": f"synthetic_pool_{method}",
                    "llm_usage": f"llm_usage_{method}",
                    "llm_usage_metrics": f"llm_usage_metrics_{method}",
                },
                parameters={
                    "parameters": "parameters",
                    "params:generation": "params:generation",
                    "params:generation_method": f"params:generation.methods.{method}",
                    "params:llm": "params:llm",
                    "params:seed": "params:seed",
                },
                tags=["generation", method],
            )
            for method in METHODS
        ),
        Pipeline([]),
    )

"""Evaluation pipeline (SynAlign sec. 4): one template pipeline per variant, namespaced by the variant's name
(as in kedro-viz's demo project ``pipelines/modelling``), then one node that gathers the table and the plots.

Run one variant with ``kedro run --namespaces synalign_mmd`` (its inputs must exist already).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from . import nodes

# Variant -> the synthetic set it adds to real train (None: Gold, real data only).
VARIANT_INPUTS: dict[str, str | None] = {
    "gold": None,
    "simprompt": "synthetic_pool_simprompt",
    "attrprompt": "synthetic_pool_attrprompt",
    "synalign_one_stage": "synthetic_pool_synalign_one_stage",
    "synalign_all": "synthetic_synalign_all",
    "synalign_random": "synthetic_synalign_random",
    "synalign_mmd": "synthetic_synalign_mmd",
}
# Datasets and parameters shared by every variant (not prefixed by the namespace).
SHARED_INPUTS = {"real_train", "real_test", "real_train_embeddings", "real_test_embeddings"}
SHARED_PARAMETERS = {"params:evaluation", "params:embedding", "params:seed"}


def synthetic_set_template() -> Pipeline:
    """Clean, embed and measure one synthetic set (distances to real train, vocabulary size)."""
    return Pipeline(
        [
            node(
                nodes.prepare_synthetic_samples,
                ["synthetic_samples", "real_train"],
                "synthetic_samples_clean",
                name="prepare_synthetic_samples",
            ),
            node(
                nodes.embed_synthetic_samples,
                ["synthetic_samples_clean", "params:embedding"],
                "synthetic_embeddings",
                name="embed_synthetic_samples",
                tags="gpu",
            ),
            node(
                nodes.compute_distribution_metrics,
                [
                    "real_train_embeddings",
                    "synthetic_embeddings",
                    "synthetic_samples_clean",
                    "params:evaluation",
                    "params:seed",
                ],
                "distribution_metrics",
                name="compute_distribution_metrics",
            ),
        ]
    )


def downstream_template() -> Pipeline:
    """Train the classifier on real train + the synthetic set and score it on real test."""
    return Pipeline(
        [
            node(
                nodes.compute_downstream_metrics,
                [
                    "real_train",
                    "real_train_embeddings",
                    "real_test",
                    "real_test_embeddings",
                    "synthetic_samples_clean",
                    "synthetic_embeddings",
                    "params:evaluation",
                    "params:embedding",
                ],
                "downstream_metrics",
                name="compute_downstream_metrics",
                tags="gpu",
            )
        ]
    )


def gold_template() -> Pipeline:
    """Gold: no synthetic rows; its distances are real train vs held-out real test (a floor)."""
    return Pipeline(
        [
            node(
                nodes.no_synthetic_samples,
                "real_train_embeddings",
                ["synthetic_samples_clean", "synthetic_embeddings"],
                name="no_synthetic_samples",
            ),
            node(
                nodes.reference_distribution_metrics,
                [
                    "real_train",
                    "real_train_embeddings",
                    "real_test_embeddings",
                    "params:evaluation",
                    "params:seed",
                ],
                "distribution_metrics",
                name="reference_distribution_metrics",
            ),
        ]
    )


def variant_pipeline(variant: str, synthetic_input: str | None) -> Pipeline:
    """The template instantiated under the namespace ``variant``."""
    if synthetic_input is None:
        template = gold_template() + downstream_template()
        inputs = set(SHARED_INPUTS)
    else:
        template = synthetic_set_template() + downstream_template()
        inputs = {name: name for name in SHARED_INPUTS} | {"synthetic_samples": synthetic_input}
    return pipeline(template, namespace=variant, inputs=inputs, parameters=SHARED_PARAMETERS)


def create_pipeline(**kwargs) -> Pipeline:
    shared = Pipeline(
        [
            node(
                nodes.embed_real_test,
                ["real_test", "params:embedding"],
                "real_test_embeddings",
                name="embed_real_test",
                tags="gpu",
            )
        ],
        tags="evaluation",
    )
    variants = sum(
        (variant_pipeline(variant, source) for variant, source in VARIANT_INPUTS.items()), Pipeline([])
    )
    metric_inputs = {}
    for variant in VARIANT_INPUTS:
        metric_inputs[f"{variant}__distribution"] = f"{variant}.distribution_metrics"
        metric_inputs[f"{variant}__downstream"] = f"{variant}.downstream_metrics"
    tsne_inputs = {
        "real_train_embeddings": "real_train_embeddings",
        "evaluation": "params:evaluation",
        "seed": "params:seed",
    } | {variant: f"{variant}.synthetic_embeddings" for variant, source in VARIANT_INPUTS.items() if source}
    reporting = Pipeline(
        [
            node(
                nodes.build_evaluation_table,
                metric_inputs,
                ["evaluation_table", "evaluation_metrics"],
                name="build_evaluation_table",
            ),
            node(nodes.plot_tsne, tsne_inputs, "evaluation_tsne_plot", name="plot_tsne"),
            node(nodes.plot_coverage, "coverage_table", "coverage_curves_plot", name="plot_coverage"),
        ]
    )
    return pipeline(shared + variants + reporting, tags="evaluation")

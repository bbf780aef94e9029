"""Evaluation pipeline (SynAlign sec. 4): one template pipeline per variant of the registry
(``core/variants.py``), namespaced by the variant's name (as in kedro-viz's demo project
``pipelines/modelling``), then the nodes that gather the table and draw the figures.

Every distance is measured against ``real_heldout`` (never fitted on), under one MMD bandwidth computed once
from the held-out rows (shared nodes ``embed_real_heldout`` and ``estimate_mmd_bandwidth``).

Run one variant with ``kedro run --namespaces synalign_mmd`` (its inputs must exist already).
"""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node, pipeline

from synalign_kedro.core.variants import EVALUATION_VARIANTS, GOLD, variant_dataset

from . import nodes

# Datasets and parameters shared by every variant (not prefixed by the namespace).
SHARED_INPUTS = {
    "real_train", "real_test", "real_train_embeddings", "real_test_embeddings", "real_heldout_embeddings",
    "mmd_bandwidth",
}  # fmt: skip
SHARED_PARAMETERS = {"params:evaluation", "params:embedding", "params:seed"}


def _prepare_for(variant: str):
    bound = partial(nodes.prepare_synthetic_samples, variant)
    update_wrapper(bound, nodes.prepare_synthetic_samples)
    return bound


def synthetic_set_template(variant: str) -> Pipeline:
    """Clean, embed and measure one synthetic set (distances to the held-out real rows, vocabulary size)."""
    return Pipeline(
        [
            node(
                _prepare_for(variant),
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
                    "real_heldout_embeddings", "synthetic_embeddings", "synthetic_samples_clean", "mmd_bandwidth",
                    "params:evaluation", "params:seed",
                ],  # fmt: skip
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
                    "real_train", "real_train_embeddings", "real_test", "real_test_embeddings",
                    "synthetic_samples_clean", "synthetic_embeddings", "params:evaluation", "params:embedding",
                ],  # fmt: skip
                "downstream_metrics",
                name="compute_downstream_metrics",
                tags="gpu",
            )
        ]
    )


def gold_template() -> Pipeline:
    """Gold: no synthetic rows; its distances are real train vs the held-out real rows (a floor)."""
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
                    "real_train", "real_train_embeddings", "real_heldout_embeddings", "mmd_bandwidth",
                    "params:evaluation", "params:seed",
                ],  # fmt: skip
                "distribution_metrics",
                name="reference_distribution_metrics",
            ),
        ]
    )


def variant_pipeline(variant: str) -> Pipeline:
    """The template instantiated under the namespace ``variant``."""
    if variant == GOLD:
        template = gold_template() + downstream_template()
        inputs: set[str] | dict[str, str] = set(SHARED_INPUTS)
    else:
        template = synthetic_set_template(variant) + downstream_template()
        inputs = {name: name for name in SHARED_INPUTS} | {"synthetic_samples": variant_dataset(variant)}
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
            ),
            node(
                nodes.embed_real_heldout,
                ["real_heldout", "params:embedding"],
                "real_heldout_embeddings",
                name="embed_real_heldout",
                tags="gpu",
            ),
            node(
                nodes.estimate_mmd_bandwidth,
                ["real_heldout_embeddings", "params:evaluation", "params:seed"],
                "mmd_bandwidth",
                name="estimate_mmd_bandwidth",
            ),
        ]
    )
    variants = sum((variant_pipeline(variant) for variant in EVALUATION_VARIANTS), Pipeline([]))
    metric_inputs = {}
    for variant in EVALUATION_VARIANTS:
        metric_inputs[f"{variant}__distribution"] = f"{variant}.distribution_metrics"
        metric_inputs[f"{variant}__downstream"] = f"{variant}.downstream_metrics"
    tsne_inputs = {
        "real_train_embeddings": "real_train_embeddings",
        "evaluation": "params:evaluation",
        "seed": "params:seed",
    } | {variant: f"{variant}.synthetic_embeddings" for variant in EVALUATION_VARIANTS if variant != GOLD}
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

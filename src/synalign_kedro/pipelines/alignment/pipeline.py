"""Wiring of the `alignment` pipeline (SynAlign sec. 3.4): the ``synalign`` pool's weights and its variants."""

from kedro.pipeline import Node, Pipeline

from synalign_kedro.core.variants import ALIGNED_METHOD, ALIGNED_VARIANTS, pool_dataset, variant_dataset

from .nodes import (
    build_variants,
    embed_synthetic_pool,
    learn_alignment_weights,
    plot_alignment_trace,
    plot_alignment_weights,
)


def create_pipeline(**kwargs) -> Pipeline:
    pool = pool_dataset(ALIGNED_METHOD)
    return Pipeline(
        [
            Node(
                embed_synthetic_pool,
                inputs=[pool, "params:embedding"],
                outputs=f"{pool}_embeddings",
                name="embed_synthetic_pool",
                tags=["gpu"],
            ),
            Node(
                learn_alignment_weights,
                inputs=[
                    pool, f"{pool}_embeddings", "real_train", "real_train_embeddings", "params:alignment",
                    "params:seed",
                ],  # fmt: skip
                outputs=["alignment_weights", "alignment_trace", "alignment_metrics"],
                name="learn_alignment_weights",
                tags=["gpu"],
            ),
            Node(
                build_variants,
                inputs=[pool, "alignment_weights", "params:alignment", "params:seed"],
                outputs=[variant_dataset(variant) for variant in ALIGNED_VARIANTS],
                name="build_alignment_variants",
            ),
            Node(plot_alignment_trace, "alignment_trace", "alignment_loss_plot", name="plot_alignment_trace"),
            Node(plot_alignment_weights, "alignment_weights", "alignment_weights_plot", name="plot_alignment_weights"),
        ]
    )

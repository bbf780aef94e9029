"""Wiring of the `alignment` pipeline (SynAlign sec. 3.4) and of the |Theta| sweep (paper table 5)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_variants,
    embed_synthetic_pool,
    learn_alignment_weights,
    plot_alignment_trace,
    sweep_n_projections,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                embed_synthetic_pool,
                inputs=["synthetic_pool_synalign", "params:embedding"],
                outputs="synthetic_pool_synalign_embeddings",
                name="embed_synthetic_pool",
                tags=["gpu"],
            ),
            Node(
                learn_alignment_weights,
                inputs=[
                    "synthetic_pool_synalign",
                    "synthetic_pool_synalign_embeddings",
                    "real_train",
                    "real_train_embeddings",
                    "params:alignment",
                    "params:seed",
                ],
                outputs=["alignment_weights", "alignment_trace", "alignment_metrics"],
                name="learn_alignment_weights",
                tags=["gpu"],
            ),
            Node(
                build_variants,
                inputs=["synthetic_pool_synalign", "alignment_weights", "params:alignment", "params:seed"],
                outputs=["synthetic_synalign_all", "synthetic_synalign_random", "synthetic_synalign_mmd"],
                name="build_alignment_variants",
            ),
            Node(
                plot_alignment_trace,
                inputs="alignment_trace",
                outputs="alignment_loss_plot",
                name="plot_alignment_trace",
            ),
        ]
    )


def create_sweep_pipeline(**kwargs) -> Pipeline:
    """|Theta| sweep (paper table 5); slow (one alignment per value), so kept out of ``__default__``:
    register it in pipeline_registry.py as ``alignment_sweep``. Needs the alignment pipeline's embeddings."""
    return Pipeline(
        [
            Node(
                sweep_n_projections,
                inputs=[
                    "synthetic_pool_synalign",
                    "synthetic_pool_synalign_embeddings",
                    "real_train",
                    "real_train_embeddings",
                    "params:alignment",
                    "params:alignment_sweep",
                    "params:seed",
                ],
                outputs="theta_sweep",
                name="sweep_n_projections",
                tags=["gpu"],
            )
        ]
    )

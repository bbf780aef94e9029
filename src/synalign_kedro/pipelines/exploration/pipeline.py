"""Exploration pipeline wiring (SynAlign sec. 3.2 and appendix A.2.3)."""

from kedro.pipeline import Pipeline, node

from . import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                nodes.embed_real_train,
                ["real_train", "params:embedding"],
                "real_train_embeddings",
                name="embed_real_train",
                tags=["gpu"],
            ),
            node(
                nodes.select_demonstration_batches,
                ["real_train", "real_train_embeddings", "params:exploration", "params:seed"],
                ["demonstration_batches", "exploration_trace"],
                name="select_demonstration_batches",
                tags=["gpu"],
            ),
            node(
                nodes.compute_coverage,
                ["real_train_embeddings", "params:exploration", "params:seed"],
                ["coverage_table", "coverage_plot", "coverage_metrics"],
                name="compute_coverage",
                tags=["gpu"],
            ),
        ]
    )

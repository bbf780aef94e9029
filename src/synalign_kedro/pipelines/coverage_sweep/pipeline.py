"""The tau x k coverage sweep (figure 5): the GP tracker runs once per (tau, k), so it is kept out of
``__default__`` (``kedro run --pipeline coverage_sweep``)."""

from kedro.pipeline import Node, Pipeline

from .nodes import plot_coverage_sweep, sweep_coverage


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                sweep_coverage,
                ["real_train_embeddings", "params:coverage_sweep", "params:seed"],
                "coverage_sweep_table",
                name="sweep_coverage",
                tags="gpu",
            ),
            Node(plot_coverage_sweep, "coverage_sweep_table", "coverage_sweep_plot", name="plot_coverage_sweep"),
        ],
        tags="coverage_sweep",
    )

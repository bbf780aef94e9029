"""|Theta| sweep (paper table 5): one alignment per value, so slow and kept out of ``__default__``
(``kedro run --pipeline alignment_sweep``, after the alignment pipeline wrote its embeddings)."""

from kedro.pipeline import Node, Pipeline

from synalign_kedro.core.variants import ALIGNED_METHOD, pool_dataset

from .nodes import sweep_n_projections


def create_pipeline(**kwargs) -> Pipeline:
    pool = pool_dataset(ALIGNED_METHOD)
    return Pipeline(
        [
            Node(
                sweep_n_projections,
                inputs=[
                    pool, f"{pool}_embeddings", "real_train", "real_train_embeddings", "params:alignment",
                    "params:alignment_sweep", "params:seed",
                ],  # fmt: skip
                outputs="theta_sweep",
                name="sweep_n_projections",
                tags=["gpu"],
            )
        ],
        tags="alignment_sweep",
    )

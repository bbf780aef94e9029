from kedro.pipeline import Node, Pipeline

from .nodes import ingest_real_data, resolve_dataset_profile


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                resolve_dataset_profile,
                inputs=["params:dataset", "parameters"],
                outputs="dataset_profile",
                name="resolve_dataset_profile",
            ),
            Node(
                ingest_real_data,
                inputs=["dataset_profile", "params:seed"],
                outputs=["real_train", "real_test", "ingestion_report"],
                name="ingest_real_data",
            ),
        ],
        tags="ingestion",
    )

from kedro.pipeline import Node, Pipeline

from .nodes import ingest_real_data


def create_pipeline(**kwargs) -> Pipeline:
    # One node for every output: Kedro saves a node's outputs only after it returns, so bad input (or a bad
    # profile) leaves every earlier output untouched, the profile included. The report stays the last output
    # (tests/test_atomic_writes.py kills a run inside its save).
    return Pipeline(
        [
            Node(
                ingest_real_data,
                inputs=["params:dataset", "parameters", "params:seed"],
                outputs=["dataset_profile", "real_train", "real_heldout", "real_test", "ingestion_report"],
                name="ingest_real_data",
            ),
        ],
        tags="ingestion",
    )

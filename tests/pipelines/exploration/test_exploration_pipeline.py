"""Exploration nodes on a small real frame, the parameter files and the pipeline wiring (no KedroSession)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from synalign_kedro.core.coverage import ExplorationSettings
from synalign_kedro.pipelines.exploration import create_pipeline, nodes
from tests.kedro_helpers import load_parameters

pytestmark = pytest.mark.usefixtures("single_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def real_train(sst2_train) -> pd.DataFrame:
    frame = sst2_train.head(300).reset_index(drop=True).copy()
    frame["row_id"] = [f"row{i:04d}" for i in range(len(frame))]
    return frame[["row_id", "text", "label"]]


@pytest.fixture(scope="module")
def test_params() -> dict:
    return load_parameters("test")["exploration"]


def test_embed_node_uses_the_cached_embedder(real_train, sst2_embeddings, embedding_cache):
    embeddings = nodes.embed_real_train(
        real_train,
        {"model": "all-MiniLM-L6-v2", "batch_size": 64, "device": "cpu", "cache_dir": str(embedding_cache)},
    )
    assert embeddings.shape == (300, 384) and embeddings.dtype == np.float32
    np.testing.assert_array_equal(embeddings, sst2_embeddings)


def test_demonstration_batches_follow_the_contract(real_train, sst2_embeddings, tmp_path):
    params = {"tracker": {"k": 4, "tau": "median", "max_rounds": 3, "threshold": 0.05, "device": "cpu"}}
    batches, trace = nodes.select_demonstration_batches(real_train, sst2_embeddings, params, seed=0)
    assert list(batches.columns) == [
        "batch_id",
        "label",
        "row_ids",
        "texts",
        "variance_at_selection",
        "round",
    ]
    assert len(batches) == 3 * real_train["label"].nunique()
    assert batches["batch_id"].tolist() == list(range(len(batches)))
    by_id = real_train.set_index("row_id")
    for row in batches.itertuples():
        assert len(row.row_ids) == 5 and len(row.texts) == 5
        assert list(by_id.loc[row.row_ids, "text"]) == list(row.texts)
        assert set(by_id.loc[row.row_ids, "label"]) == {row.label}
        assert 0 < row.variance_at_selection <= 1
    assert set(trace.columns) >= {"tracker", "round", "max_variance_before", "max_variance_after"}
    # the contract survives a Parquet round trip (list columns)
    batches.to_parquet(tmp_path / "b.parquet")
    again = pd.read_parquet(tmp_path / "b.parquet")
    assert list(again.loc[0, "row_ids"]) == batches.loc[0, "row_ids"]


def test_nodes_reject_bad_input(real_train, sst2_embeddings):
    with pytest.raises(ValueError, match="kk"):
        nodes.select_demonstration_batches(real_train, sst2_embeddings, {"tracker": {"kk": 3}}, seed=0)
    with pytest.raises(ValueError, match="rows"):
        nodes.select_demonstration_batches(real_train.head(10), sst2_embeddings, {"tracker": {}}, seed=0)
    with pytest.raises(ValueError, match="label"):
        nodes.select_demonstration_batches(real_train.drop(columns="label"), sst2_embeddings, {}, seed=0)


def test_coverage_node_with_test_params(sst2_embeddings, test_params):
    table, figure, metrics = nodes.compute_coverage(sst2_embeddings, test_params, seed=7)
    steps = test_params["coverage"]["steps"]
    assert list(table.columns) == ["step", "sampler", "seed", "coverage"]
    assert len(table) == steps * (1 + len(test_params["coverage"]["random_seeds"]))
    assert {"coverage_auc_gp", "coverage_auc_random", "coverage_gp_at_20", "coverage_random_at_20"} <= set(
        metrics
    )
    assert metrics["coverage_auc_gp"] == {
        "value": pytest.approx(metrics["coverage_auc_gp"]["value"]),
        "step": 0,
    }
    assert [point["step"] for point in metrics["coverage_curve_gp"]] == list(range(1, steps + 1))
    assert figure.startswith(b"\x89PNG")


def test_parameter_files_and_wiring(project_root):
    for env in ("base", "test"):
        ExplorationSettings.model_validate(load_parameters(env)["exploration"])
    catalog = yaml.safe_load((project_root / "conf/base/catalog_exploration.yml").read_text())
    pipeline = create_pipeline()
    assert pipeline.outputs() <= set(catalog)  # every output persisted (names, not factories)
    assert pipeline.inputs() == {"real_train", "params:embedding", "params:exploration", "params:seed"}
    assert all("gpu" in node.tags for node in pipeline.nodes)

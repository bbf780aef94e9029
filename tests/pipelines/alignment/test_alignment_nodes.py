"""Tests of the `alignment` pipeline's nodes and wiring (tiny data, CPU, no MLflow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from synalign_kedro.core.aligned_variants import MAX_MLFLOW_TRACE_POINTS, resolve_n_resample
from synalign_kedro.core.generation import POOL_COLUMNS
from synalign_kedro.pipelines.alignment import create_pipeline, nodes
from synalign_kedro.pipelines.alignment_sweep import create_pipeline as create_sweep_pipeline
from synalign_kedro.pipelines.alignment_sweep.nodes import sweep_n_projections
from tests.kedro_helpers import load_parameters
from tests.pools import synthetic_pool


@pytest.fixture(scope="module")
def params():
    return load_parameters("test")


def _pool(labels: list[str]) -> pd.DataFrame:
    return synthetic_pool([f"text {i}" for i in range(len(labels))], labels, "synalign")


@pytest.fixture(scope="module")
def case():
    """Real: 400 rows around the origin; pool: 30 real-like rows and 20 shifted ones, two labels."""
    rng = np.random.default_rng(0)
    real_embeddings = rng.normal(size=(400, 16)).astype(np.float32)
    pool_embeddings = np.vstack([rng.normal(size=(30, 16)), rng.normal(size=(20, 16)) + 2]).astype(np.float32)
    real = pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(400)],
            "text": "t",
            "label": np.where(np.arange(400) % 2, "pos", "neg"),
        }
    )
    pool = _pool(np.where(np.arange(50) % 2, "pos", "neg").tolist())
    return pool, pool_embeddings, real, real_embeddings


@pytest.mark.parametrize("per_label", [False, True])
def test_learn_weights_outputs(case, params, per_label):
    pool, pool_embeddings, real, real_embeddings = case
    config = {**params["alignment"], "per_label": per_label}
    weights, trace, metrics = nodes.learn_alignment_weights(
        pool, pool_embeddings, real, real_embeddings, config, 0
    )
    assert list(weights.columns) == ["synthetic_id", "label", "weight"]
    assert weights["synthetic_id"].tolist() == pool["synthetic_id"].tolist()
    assert (weights["weight"] >= 0).all() and weights["weight"].sum() == pytest.approx(1.0)
    assert weights["weight"].iloc[:30].sum() > 0.8
    assert {"group", "iteration", "loss"} <= set(trace.columns)
    assert set(trace["group"]) == ({"pos", "neg"} if per_label else {"__all__"})
    for key in [
        "alignment_final_loss",
        "alignment_initial_loss",
        "alignment_iterations",
        "alignment_effective_sample_size",
    ]:
        assert np.isfinite(metrics[key]["value"])
    assert metrics["alignment_final_loss"]["value"] < metrics["alignment_initial_loss"]["value"]
    assert len(metrics["alignment_loss"]) <= MAX_MLFLOW_TRACE_POINTS


def test_variants(case, params):
    pool, pool_embeddings, real, real_embeddings = case
    weights, _, _ = nodes.learn_alignment_weights(
        pool, pool_embeddings, real, real_embeddings, params["alignment"], 0
    )
    config = {**params["alignment"], "n_resample": None}  # zeta = resample_fraction (0.5) x pool
    every, random, mmd = nodes.build_variants(pool, weights, config, 0)
    assert list(every.columns) == [*POOL_COLUMNS, "weight"]
    assert len(every) == 50 and every["weight"].sum() == pytest.approx(1.0)
    # one sampling rule: same size and label mix, both drawn with replacement (alignment.replace: true)
    assert len(random) == len(mmd) == 25
    assert random["label"].value_counts().to_dict() == mmd["label"].value_counts().to_dict()
    assert set(mmd["synthetic_id"]) <= set(pool["synthetic_id"])
    assert set(random["synthetic_id"]) != set(mmd["synthetic_id"])
    real_like = set(pool["synthetic_id"].iloc[:30])
    assert mmd["synthetic_id"].isin(real_like).mean() > random["synthetic_id"].isin(real_like).mean()


def test_variants_without_replacement_and_fixed_zeta(case, params):
    pool, pool_embeddings, real, real_embeddings = case
    config = {**params["alignment"], "replace": False, "n_resample": 10}
    weights, _, _ = nodes.learn_alignment_weights(pool, pool_embeddings, real, real_embeddings, config, 0)
    _, random, mmd = nodes.build_variants(pool, weights, config, 0)
    assert len(random) == len(mmd) == 10 and mmd["synthetic_id"].is_unique and random["synthetic_id"].is_unique
    assert random["label"].value_counts().to_dict() == mmd["label"].value_counts().to_dict()


def test_an_empty_pool_is_an_error_not_a_result(case, params):
    _, _, real, real_embeddings = case
    empty = _pool([])
    with pytest.raises(ValueError, match="synthetic_pool_synalign is empty: nothing to align"):
        nodes.learn_alignment_weights(empty, np.zeros((0, 16), np.float32), real, real_embeddings, params["alignment"], 0)
    no_weights = pd.DataFrame({"synthetic_id": pd.Series(dtype=str), "weight": pd.Series(dtype=float)})
    with pytest.raises(ValueError, match="no aligned variant can be built"):
        nodes.build_variants(empty, no_weights, params["alignment"], 0)
    assert nodes.plot_alignment_trace(pd.DataFrame(columns=["group", "iteration", "loss"])).startswith(b"\x89PNG")


def test_one_label_only_is_aligned_with_a_warning(case, params, caplog):
    pool, pool_embeddings, real, real_embeddings = case
    # only one label generated (weak LLM): per-label alignment warns and aligns the other
    one_label = _pool(["pos"] * 50)
    with caplog.at_level("WARNING"):
        weights, _, _ = nodes.learn_alignment_weights(
            one_label, pool_embeddings, real, real_embeddings, {**params["alignment"], "per_label": True}, 0
        )
    assert "no synthetic sample" in caplog.text
    assert weights["weight"].sum() == pytest.approx(1.0)


def test_row_mismatch_is_named(case, params):
    pool, pool_embeddings, real, real_embeddings = case
    with pytest.raises(ValueError, match="synthetic_pool_synalign has 50 rows"):
        nodes.learn_alignment_weights(
            pool, pool_embeddings[:10], real, real_embeddings, params["alignment"], 0
        )


def test_resolve_n_resample():
    assert resolve_n_resample(80, None, 0.5) == 40
    assert resolve_n_resample(1, None, 0.5) == 1
    assert resolve_n_resample(80, 7, 0.5) == 7
    with pytest.raises(ValueError, match="n_resample"):
        resolve_n_resample(80, -1, 0.5)


def test_sweep(case, params):
    pool, pool_embeddings, real, real_embeddings = case
    table = sweep_n_projections(
        pool, pool_embeddings, real, real_embeddings, params["alignment"], params["alignment_sweep"], 0
    )
    swept = table[table["n_projections"] > 0]
    assert swept["n_projections"].tolist() == params["alignment_sweep"]["n_projections"]
    uniform = table.loc[table["n_projections"] == 0, "wasserstein_weighted"].item()
    assert (swept["wasserstein_weighted"] < uniform).all()
    assert swept["wasserstein_resampled"].notna().all()


def test_embed_synthetic_pool(sst2_train, embedding_cache):
    pool = _pool(["positive", "negative"])
    pool["text"] = sst2_train["text"].head(2).tolist()
    embeddings = nodes.embed_synthetic_pool(
        pool,
        {"model": "all-MiniLM-L6-v2", "batch_size": 8, "device": "cpu", "cache_dir": str(embedding_cache)},
    )
    assert embeddings.shape == (2, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_pipeline_runs_end_to_end(case, params):
    """The wiring: every declared output is produced from the declared inputs (embedding node replaced by a
    precomputed array, MLflow datasets by memory)."""
    pool, pool_embeddings, real, real_embeddings = case
    pipeline = (
        create_pipeline().filter(
            node_names=[
                "learn_alignment_weights", "build_alignment_variants", "plot_alignment_trace",
                "plot_alignment_weights",
            ]
        )
        + create_sweep_pipeline()
    )
    catalog = DataCatalog(
        {
            "synthetic_pool_synalign": MemoryDataset(pool),
            "synthetic_pool_synalign_embeddings": MemoryDataset(pool_embeddings),
            "real_train": MemoryDataset(real),
            "real_train_embeddings": MemoryDataset(real_embeddings),
            "params:alignment": MemoryDataset(params["alignment"]),
            "params:alignment_sweep": MemoryDataset(params["alignment_sweep"]),
            "params:seed": MemoryDataset(0),
        }
    )
    outputs = SequentialRunner().run(pipeline, catalog)
    free_outputs = {
        "synthetic_synalign_all",
        "synthetic_synalign_random",
        "synthetic_synalign_mmd",
        "alignment_metrics",
        "alignment_loss_plot",
        "alignment_weights_plot",
        "theta_sweep",
    }
    assert free_outputs <= set(outputs)
    assert "gpu" in create_pipeline().filter(node_names=["learn_alignment_weights"]).nodes[0].tags

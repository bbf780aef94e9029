"""Tests of the `evaluation` pipeline's nodes and wiring (tiny data, CPU, no MLflow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from synalign_kedro.core.metrics import median_heuristic_bandwidth, mmd_rbf, wasserstein_distance
from synalign_kedro.core.variants import EVALUATION_VARIANTS, SYNTHETIC_VARIANTS, variant_dataset
from synalign_kedro.pipelines.evaluation import create_pipeline, nodes
from tests.kedro_helpers import load_parameters
from tests.pools import synthetic_pool

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def evaluation_params():
    return load_parameters("test")["evaluation"]


@pytest.fixture(scope="module")
def embedding_params(embedding_cache):
    return {"model": "all-MiniLM-L6-v2", "batch_size": 32, "device": "cpu", "cache_dir": str(embedding_cache)}


def test_an_empty_synthetic_set_is_an_error_not_a_row_of_nan(sst2_train):
    """A weak LLM produced nothing (or only invented labels): the variant fails with a clear message instead
    of reaching the table and MLflow as NaN distances and gold's accuracy."""
    real = sst2_train.head(20)
    with pytest.raises(ValueError, match="variant 'attrprompt': the synthetic set has no usable row"):
        nodes.prepare_synthetic_samples("attrprompt", synthetic_pool([], [], "attrprompt"), real)
    invented = synthetic_pool(["a text", "another text"], ["not_a_label"] * 2, "simprompt")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"no usable row \(2 rows before cleaning\)"):
        nodes.prepare_synthetic_samples("simprompt", invented, real)


def test_build_evaluation_table_orders_rows_and_prefixes_metrics():
    table, metrics = nodes.build_evaluation_table(
        gold__distribution={
            "wasserstein": 0.5,
            "mmd": 0.01,
            "vocab_size": 100,
            "n_synthetic": 0,
            "mmd_bandwidth": 0.9,
            "distribution_reference": "real_heldout",
        },
        gold__downstream={
            "accuracy": 0.8,
            "accuracy_std": 0.01,
            "macro_f1": 0.79,
            "macro_f1_std": 0.02,
            "classifier": "logistic_regression",
        },
        simprompt__distribution={
            "wasserstein": float("nan"),
            "mmd": float("nan"),
            "vocab_size": 0,
            "n_synthetic": 0,
        },
        simprompt__downstream={"accuracy": 0.81, "accuracy_std": 0.0, "macro_f1": 0.8, "macro_f1_std": 0.0},
    )
    assert table["variant"].tolist() == ["gold", "simprompt"]
    for column in [
        "wasserstein",
        "mmd",
        "vocab_size",
        "accuracy",
        "accuracy_std",
        "macro_f1",
        "macro_f1_std",
        "n_synthetic",
    ]:
        assert column in table.columns
    assert metrics["gold.accuracy"] == {"value": 0.8, "step": 0}
    assert metrics["simprompt.vocab_size"] == {"value": 0.0, "step": 0}
    assert "simprompt.wasserstein" not in metrics  # NaN is not logged
    assert "gold.classifier" not in metrics  # strings are not metrics
    with pytest.raises(ValueError, match="unexpected input name"):
        nodes.build_evaluation_table(gold={"accuracy": 1.0})


def test_pipeline_wiring():
    pipeline = create_pipeline()
    expected_inputs = {
        "real_train",
        "real_heldout",
        "real_test",
        "real_train_embeddings",
        "coverage_table",
        "params:embedding",
        "params:evaluation",
        "params:seed",
    } | {variant_dataset(variant) for variant in SYNTHETIC_VARIANTS}
    assert pipeline.inputs() == expected_inputs
    assert pipeline.outputs() == {
        "evaluation_table",
        "evaluation_metrics",
        "evaluation_tsne_plot",
        "coverage_curves_plot",
    }
    mmd_only = pipeline.only_nodes_with_namespaces(["synalign_mmd"])
    assert "synthetic_synalign_mmd" in mmd_only.inputs()
    # every variant is measured against the held-out rows under the one shared bandwidth
    assert {"real_heldout_embeddings", "mmd_bandwidth"} <= mmd_only.inputs()
    assert "real_train_embeddings" not in pipeline.only_nodes("synalign_mmd.compute_distribution_metrics").inputs()
    bandwidth_node = pipeline.only_nodes("estimate_mmd_bandwidth")
    assert bandwidth_node.inputs() == {"real_heldout_embeddings", "params:evaluation", "params:seed"}
    assert mmd_only.outputs() >= {"synalign_mmd.distribution_metrics", "synalign_mmd.downstream_metrics"}
    assert not any(
        name.startswith("synthetic") for name in pipeline.only_nodes_with_namespaces(["gold"]).inputs()
    )


def test_whole_pipeline_on_tiny_data(sst2_train, evaluation_params, embedding_params):
    """Real run on 80 real train / 40 test rows and tiny synthetic sets, including a set with an invented
    label (dropped with a warning)."""
    rows = sst2_train.sample(150, random_state=0).reset_index(drop=True)
    real_train = rows.iloc[:80].assign(row_id=lambda frame: [f"r{i}" for i in range(len(frame))])
    real_test = rows.iloc[80:120].assign(row_id=lambda frame: [f"t{i}" for i in range(len(frame))])
    real_heldout = rows.iloc[120:].assign(row_id=lambda frame: [f"h{i}" for i in range(len(frame))])
    from synalign_kedro.core.embedding import embed_texts

    def embed(texts):
        return embed_texts(list(texts), device="cpu", cache_dir=embedding_params["cache_dir"])

    real_train_embeddings = embed(real_train["text"])
    synthetic_texts = sst2_train["text"].iloc[500:530].tolist()
    synthetic_labels = sst2_train["label"].astype(str).iloc[500:530].tolist()
    sets = {
        "synthetic_pool_simprompt": synthetic_pool(synthetic_texts[:10], synthetic_labels[:10], "simprompt"),
        "synthetic_pool_attrprompt": synthetic_pool(synthetic_texts[20:25], synthetic_labels[20:25], "attrprompt"),
        "synthetic_pool_synalign_one_stage": synthetic_pool(
            synthetic_texts[10:20], ["not_a_label"] * 2 + synthetic_labels[12:20], "synalign_one_stage"
        ),
        "synthetic_pool_synalign_feedback": synthetic_pool(
            synthetic_texts[5:15], synthetic_labels[5:15], "synalign_feedback"
        ),
        "synthetic_synalign_all": synthetic_pool(synthetic_texts, synthetic_labels, "synalign").assign(weight=1 / 30),
        "synthetic_synalign_random": synthetic_pool(synthetic_texts[:15], synthetic_labels[:15], "synalign").assign(
            weight=1 / 15
        ),
        "synthetic_synalign_mmd": synthetic_pool(synthetic_texts[15:], synthetic_labels[15:], "synalign").assign(
            weight=1 / 15
        ),
    }
    coverage = pd.DataFrame(
        {
            "step": [1, 2, 1, 2],
            "sampler": ["gp", "gp", "random", "random"],
            "seed": [42, 42, 0, 0],
            "coverage": [0.1, 0.3, 0.05, 0.2],
        }
    )
    datasets = {
        "real_train": real_train,
        "real_heldout": real_heldout,
        "real_test": real_test,
        "real_train_embeddings": real_train_embeddings,
        "coverage_table": coverage,
        "params:embedding": embedding_params,
        "params:evaluation": evaluation_params,
        "params:seed": 0,
        **sets,
    }
    catalog = DataCatalog({name: MemoryDataset(value) for name, value in datasets.items()})
    for output in [
        "evaluation_table", "evaluation_metrics", "evaluation_tsne_plot", "coverage_curves_plot", "mmd_bandwidth",
    ]:  # fmt: skip
        catalog[output] = MemoryDataset()
    with pytest.warns(UserWarning):
        SequentialRunner().run(create_pipeline(), catalog)
    table = catalog.load("evaluation_table").set_index("variant")
    assert list(table.index) == list(EVALUATION_VARIANTS)
    assert table.loc["gold", "n_synthetic"] == 0
    # every distance against the held-out rows, under one bandwidth from the held-out rows alone
    assert (table["distribution_reference"] == "real_heldout").all()
    heldout_embeddings = embed(real_heldout["text"])
    bandwidth = median_heuristic_bandwidth(heldout_embeddings, heldout_embeddings[:0], device="cpu")
    assert table["mmd_bandwidth"].nunique() == 1 and table["mmd_bandwidth"].iloc[0] == pytest.approx(bandwidth)
    mmd_embeddings = embed(sets["synthetic_synalign_mmd"]["text"])
    assert table.loc["synalign_mmd", "mmd"] == pytest.approx(
        mmd_rbf(heldout_embeddings, mmd_embeddings, bandwidth=bandwidth, device="cpu")
    )
    assert table.loc["synalign_mmd", "wasserstein"] == pytest.approx(wasserstein_distance(heldout_embeddings, mmd_embeddings))
    assert table.loc["synalign_mmd", "mmd"] != pytest.approx(
        mmd_rbf(real_train_embeddings, mmd_embeddings, bandwidth=bandwidth, device="cpu")
    )
    # gold: real train vs held-out real (the floor)
    assert table.loc["gold", "mmd"] == pytest.approx(
        mmd_rbf(heldout_embeddings, real_train_embeddings, bandwidth=bandwidth, device="cpu")
    )
    assert table.loc["gold", "wasserstein"] == pytest.approx(
        wasserstein_distance(heldout_embeddings, real_train_embeddings)
    )
    assert table.loc["gold", "vocab_size"] > table.loc["simprompt", "vocab_size"] > 0
    assert table.loc["synalign_one_stage", "n_synthetic"] == 8  # the invented label was dropped
    assert table.loc["attrprompt", "n_synthetic"] == 5
    assert table.loc["synalign_mmd", "wasserstein"] > 0 and table.loc["synalign_mmd", "mmd"] > 0
    assert (
        table["accuracy"].between(0, 1).all() and (table["n_seeds"] == len(evaluation_params["seeds"])).all()
    )
    metrics = catalog.load("evaluation_metrics")
    assert metrics["synalign_mmd.accuracy"]["value"] == pytest.approx(table.loc["synalign_mmd", "accuracy"])
    assert all(key.split(".")[0] in EVALUATION_VARIANTS for key in metrics)
    assert catalog.load("evaluation_tsne_plot").startswith(PNG)
    assert catalog.load("coverage_curves_plot").startswith(PNG)


def test_the_bandwidth_comes_from_the_heldout_rows_only(evaluation_params):
    """One sigma for every variant: the median pairwise distance of the held-out rows (no synthetic or train
    row moves it), or the configured number."""
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(0)
    heldout = rng.normal(size=(41, 8))
    bandwidth = nodes.estimate_mmd_bandwidth(heldout, evaluation_params, seed=0)
    assert bandwidth == pytest.approx(float(np.median(pdist(heldout))))
    fixed = {**evaluation_params, "mmd": {**evaluation_params["mmd"], "bandwidth": 0.7}}
    assert nodes.estimate_mmd_bandwidth(heldout, fixed, seed=0) == 0.7
    # the distances use that bandwidth, against the held-out rows, whatever the synthetic set
    far, near = rng.normal(size=(30, 8)) + 3, rng.normal(size=(30, 8))
    samples = pd.DataFrame({"text": ["a b"] * 30, "label": ["pos"] * 30})
    rows = [
        nodes.compute_distribution_metrics(heldout, other, samples, bandwidth, evaluation_params, 0)
        for other in (far, near)
    ]
    assert [row["mmd_bandwidth"] for row in rows] == [bandwidth, bandwidth]
    assert {row["distribution_reference"] for row in rows} == {"real_heldout"}
    assert rows[0]["mmd"] == pytest.approx(mmd_rbf(heldout, far, bandwidth=bandwidth, device="cpu"))
    assert rows[0]["mmd"] > rows[1]["mmd"] and rows[0]["wasserstein"] > rows[1]["wasserstein"]
    # no held-out rows (heldout_share: 0): no bandwidth, NaN distances (not a number under a made-up kernel)
    nan_bandwidth = nodes.estimate_mmd_bandwidth(heldout[:0], evaluation_params, seed=0)
    assert np.isnan(nan_bandwidth)
    empty = nodes.compute_distribution_metrics(heldout[:0], near, samples, nan_bandwidth, evaluation_params, 0)
    assert np.isnan(empty["mmd"]) and np.isnan(empty["wasserstein"])


def test_coverage_sweep_on_tiny_data():
    from synalign_kedro.core.plots import coverage_sweep_figure
    from synalign_kedro.pipelines.coverage_sweep import create_pipeline as create_coverage_sweep_pipeline
    from synalign_kedro.pipelines.coverage_sweep.nodes import plot_coverage_sweep, sweep_coverage

    params = load_parameters("test")["coverage_sweep"]
    embeddings = np.random.default_rng(0).normal(size=(80, 16))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    table = sweep_coverage(embeddings, params, seed=0)
    gp = table[table["sampler"] == "gp"]
    assert sorted(gp["tau"]) == sorted(params["taus"]) and len(table) == len(params["ks"]) * (
        len(params["taus"]) + len(params["random_seeds"])
    )
    assert table["coverage"].between(0, 1).all()
    assert plot_coverage_sweep(table).startswith(PNG)
    figure = coverage_sweep_figure(table)
    assert len(figure.axes[0].lines) == 2  # one GP curve and one random line for the single k
    with pytest.raises(ValueError, match="taus"):
        sweep_coverage(embeddings, {**params, "taus": ["median"]}, seed=0)
    with pytest.raises(ValueError, match="positive numbers"):
        sweep_coverage(embeddings, {**params, "taus": [-1.0]}, seed=0)
    assert create_coverage_sweep_pipeline().inputs() == {
        "real_train_embeddings",
        "params:coverage_sweep",
        "params:seed",
    }

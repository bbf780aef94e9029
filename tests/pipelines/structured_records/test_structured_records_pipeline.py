"""The structured_records pipeline: wiring, and a real `kedro run --env test --pipeline structured_records`
(catalog, kedro-mlflow, the embedded SmolLM2 test LLM) in a scratch copy of the project."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from synalign_kedro.pipelines.structured_records.pipeline import BASELINES, create_pipeline
from tests.kedro_helpers import run_kedro, scratch_project


def test_wiring_inputs_and_outputs():
    pipe = create_pipeline()
    assert pipe.inputs() == {"structured_source", "params:structured_records", "params:llm"}
    assert {f"structured_records_{b}" for b in BASELINES} <= pipe.outputs() | pipe.all_outputs()
    assert {"structured_run_report", "structured_convergence_plot", "structured_trace_metrics"} <= pipe.outputs()
    assert "structured_evaluation" in pipe.all_outputs()  # the run report reads it
    assert {n.name for n in pipe.only_nodes_with_tags("llm").nodes} == {"synthesize_records", "baseline_llm_icl"}


def test_the_run_report_node_and_its_catalog_entry():
    """The HTML report is the last node (it takes every method's records and reports) and is saved through the
    catalog, under the environment's base_location and logged to MLflow like the text pipelines' run report."""
    from kedro.config import OmegaConfigLoader

    from tests.kedro_helpers import PROJECT_ROOT

    pipe = create_pipeline()
    (report,) = [n for n in pipe.nodes if n.name == "build_structured_report"]
    assert report.outputs == ["structured_run_report"] and "structured_run_report" in pipe.outputs()
    assert {f"structured_records_{b}" for b in BASELINES} | {f"structured_baseline_report_{b}" for b in BASELINES} <= set(report.inputs)
    assert {"structured_target_statistics", "structured_trace", "structured_report", "structured_evaluation"} <= set(report.inputs)
    for env, base in (("base", "data"), ("test", "data/test_env")):
        loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=None if env == "base" else env, base_env="base", default_run_env="base")
        catalog = loader["catalog"]
        entry = catalog["structured_run_report"]
        assert entry["type"] == "text.TextDataset" and entry["metadata"] == {"mlflow_artifact_path": "reports"}
        assert entry["filepath"] == f"{base}/08_reporting/structured_run_report.html"
        # every file output of the pipeline is in the catalog, under the environment's base_location
        for name in pipe.all_outputs():
            assert name in catalog, name
            if "filepath" in catalog[name]:
                assert catalog[name]["filepath"].startswith(base + "/"), (env, name, catalog[name]["filepath"])


@pytest.mark.slow
def test_kedro_run_env_test(tmp_path, monkeypatch):
    root = scratch_project(tmp_path)
    monkeypatch.chdir(root)  # mlflow.yml's sqlite:///mlflow.db is relative to the working directory
    run_kedro(root, env="test", pipeline="structured_records")
    data = root / "data" / "test_env"  # conf/test/globals.yml: base_location
    records = pd.read_parquet(data / "07_model_output/structured_records_llmsynthor.parquet")
    assert len(records) == 60  # n_records of conf/test: every batch drawn (greedy fallback when SmolLM2 fails)
    assert records["user_age"].between(18, 90).all() and records["price"].between(0, 2000).all()
    trace = pd.read_csv(data / "08_reporting/structured_trace.csv")
    assert trace["iteration"].tolist() == [1, 2]
    evaluation = pd.read_csv(data / "08_reporting/structured_evaluation.csv").set_index("method")
    assert set(evaluation.index) == {"llmsynthor", *BASELINES}
    assert {"price_w", "age_w", "category_tvd", "jsd_category_price", "rejection_rate", "tstr_lifetime_value_band_rf"} <= set(evaluation.columns)
    assert (data / "08_reporting/structured_convergence.png").stat().st_size > 1000
    page = (data / "08_reporting/structured_run_report.html").read_text()
    assert page.index("<h2>Answer</h2>") < page.index("<h2>Convergence</h2>") < page.index("<h2>Per-column")
    assert "llmsynthor ranks" in page and 'src="data:image/png;base64,' in page
    assert not (root / "data" / "08_reporting").exists()  # the test env writes under data/test_env/ only
    target = json.loads((data / "05_model_input/structured_target_statistics.json").read_text())
    assert len(target["marginals"]["price"]["bins"]) == 7
    plans = json.loads((data / "08_reporting/structured_plans.json").read_text())
    assert not any("context length" in plan["error"] for plan in plans)  # the test prompt fits SmolLM2's 2,048 tokens
    client = mlflow.MlflowClient()  # the tracking URI kedro-mlflow set for the run
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=20)
    run = next(r for r in runs if "structured.discrepancy_l1" in r.data.metrics)
    history = client.get_metric_history(run.info.run_id, "structured.discrepancy_l1")
    assert [m.step for m in history] == [1, 2]


def test_published_aggregates_are_an_input_too():
    """The shipped YAML aggregates through the nodes: target, the statistics-only baselines, and an evaluation
    against the target (no real table: distances to the target statistics; the copula baseline is skipped)."""
    import yaml

    from synalign_kedro.pipelines.structured_records.nodes import (
        build_target_statistics,
        evaluate_structured_records,
        generate_baseline,
    )
    from tests.kedro_helpers import PROJECT_ROOT

    source = yaml.safe_load((PROJECT_ROOT / "data/01_raw/structured/ecommerce_targets.yml").read_text())
    params = {"variables": None, "synthor": {"n_records": 300}, "baselines": ["independent_marginals", "ipf", "gaussian_copula"]}
    target = build_target_statistics(source, params)
    assert [j["variables"] for j in target["joints"]] == [["user_age", "user_gender", "product_category"], ["product_category", "price"], ["location_tier", "payment_method"]]
    made = {name: generate_baseline(source, params, {}, name) for name in BASELINES}
    assert made["gaussian_copula"][1] == {"skipped": "needs a real table"}
    assert made["llm_icl"][1] == {"skipped": "not in structured_records.baselines"}
    ipf = made["ipf"][0]
    evaluation = evaluate_structured_records(source, params, ipf, *(made[name][0] for name in BASELINES)).set_index("method")
    assert evaluation.loc["ipf", "jsd_mean"] < 0.02 and evaluation.loc["ipf", "n_records"] == 300
    assert evaluation.loc["gaussian_copula", "n_records"] == 0

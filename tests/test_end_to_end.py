"""`kedro run --env test` end to end: real catalog, real hooks (kedro-mlflow), real embedder, real LLM server
(SmolLM2-135M), every pipeline. Then the same run under ParallelRunner (every LLM call cached), which must give
the same evaluation table, and a generation-only run, which must make no LLM call. The test env writes under
data/test_env/ only, and bad parameters fail before the first node."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from synalign_kedro.core.variants import EVALUATION_VARIANTS, GENERATION_METHODS
from tests.kedro_helpers import scratch_project

pytestmark = pytest.mark.slow

VARIANTS = set(EVALUATION_VARIANTS)
TEST_DATA = Path("data") / "test_env"  # conf/test/globals.yml base_location
BASE_TABLE = b"variant,accuracy\ngold,0.5\n"  # what a real (base env) run left in data/08_reporting


KEDRO = str(Path(sys.executable).with_name("kedro"))


def kedro_cli(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`kedro run ...` as a user types it, in its own process (one MLflow run per command)."""
    env = {**os.environ, "DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([KEDRO, "run", *args], cwd=root, env=env, capture_output=True, text=True, timeout=3600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def orphaned_llama_servers() -> list[int]:
    """llama.cpp servers whose parent is gone (re-parented to init): what a leaked server looks like."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = stat.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((stat.parent / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if "llama_cpp.server" in cmdline and ppid == 1:
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture(scope="module")
def finished_project(tmp_path_factory):
    root = scratch_project(tmp_path_factory.mktemp("e2e"))
    (root / "data" / "08_reporting").mkdir(parents=True)
    (root / "data" / "08_reporting" / "evaluation_table.csv").write_bytes(BASE_TABLE)
    kedro_cli(root, "--env", "test")
    return root


@pytest.fixture(scope="module")
def parallel_run(finished_project):
    """The same run again under ParallelRunner (LLM calls cached): (sequential table, parallel table)."""
    table = finished_project / TEST_DATA / "08_reporting" / "evaluation_table.csv"
    sequential = pd.read_csv(table)
    kedro_cli(finished_project, "--env", "test", "--runner", "ParallelRunner")
    return sequential, pd.read_csv(table)


def test_the_test_env_leaves_the_base_env_outputs_untouched(finished_project):
    assert (finished_project / "data" / "08_reporting" / "evaluation_table.csv").read_bytes() == BASE_TABLE
    assert (finished_project / TEST_DATA / "08_reporting" / "evaluation_table.csv").is_file()
    written = {p.relative_to(finished_project / "data").parts[0] for p in (finished_project / "data").rglob("*") if p.is_file()}
    assert written <= {"01_raw", "02_intermediate", "04_feature", "08_reporting", "test_env"}, written
    # data/02_intermediate and data/04_feature hold the content-addressed LLM and embedding caches only


def test_the_parallel_runner_gives_the_same_table_and_the_report_embeds_its_figures(finished_project, parallel_run):
    sequential, parallel = parallel_run
    pd.testing.assert_frame_equal(parallel, sequential)
    reporting = finished_project / TEST_DATA / "08_reporting"
    page = (reporting / "run_report.html").read_text()
    for figure in ("evaluation_tsne.png", "coverage_curves.png", "alignment_loss.png", "alignment_weights.png"):
        assert base64.b64encode((reporting / figure).read_bytes()).decode("ascii") in page, figure


def test_bad_parameters_fail_before_the_first_node(finished_project):
    result = kedro_cli(finished_project, "--env", "test", "--params", "seed=abc", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "seed: Input should be a valid integer" in output and "'abc'" in output
    assert "Running node" not in output and "Completed node" not in output


def test_every_pipeline_wrote_its_outputs(finished_project):
    reporting = finished_project / TEST_DATA / "08_reporting"
    table = pd.read_csv(reporting / "evaluation_table.csv")
    assert set(table["variant"]) == VARIANTS
    for column in ("wasserstein", "mmd", "vocab_size", "accuracy", "accuracy_std", "macro_f1", "macro_f1_std", "n_synthetic"):
        assert column in table.columns, column
    gold = table.set_index("variant").loc["gold"]
    assert gold["n_synthetic"] == 0 and 0.5 < gold["accuracy"] <= 1.0
    coverage = pd.read_csv(reporting / "coverage.csv")
    assert set(coverage["sampler"]) == {"gp", "random"}
    manifest = json.loads((reporting / "ab_export" / "manifest.json").read_text())
    assert manifest["files"]
    assert (reporting / "run_report.html").stat().st_size > 10_000
    batches = pd.read_parquet(finished_project / TEST_DATA / "05_model_input" / "demonstration_batches.parquet")
    assert len(batches) > 0
    for method in GENERATION_METHODS:
        pool = pd.read_parquet(finished_project / TEST_DATA / "07_model_output" / f"synthetic_pool_{method}.parquet")
        assert {"text", "label", "method", "raw_response"} <= set(pool.columns), method


def test_no_number_is_circular(finished_project):
    """Issue 13: distances against held-out real rows that nothing saw, one MMD bandwidth for every variant,
    and synalign_random / synalign_mmd drawn by one rule (they differ only in the weights)."""
    data = finished_project / TEST_DATA
    table = pd.read_csv(data / "08_reporting" / "evaluation_table.csv").set_index("variant")
    synthetic = sorted(VARIANTS - {"gold"})
    assert (table.loc[synthetic, "n_synthetic"] > 0).all(), table["n_synthetic"].to_dict()
    # the held-out part is disjoint from real_train, the only real rows the tracker and the alignment saw
    train = pd.read_parquet(data / "03_primary" / "real_train.parquet")
    heldout = pd.read_parquet(data / "03_primary" / "real_heldout.parquet")
    assert len(heldout) > 0 and not set(heldout["row_id"]) & set(train["row_id"])
    assert not set(heldout["text"]) & set(train["text"])
    assert len(np.load(data / "04_feature" / "real_train_embeddings.npy")) == len(train)  # alignment's reference
    # one bandwidth (from the held-out rows) and one reference for every row
    assert table["mmd_bandwidth"].nunique() == 1 and np.isfinite(table["mmd_bandwidth"]).all()
    saved = json.loads((data / "04_feature" / "mmd_bandwidth.json").read_text())
    assert table["mmd_bandwidth"].iloc[0] == pytest.approx(saved)
    assert (table["distribution_reference"] == "real_heldout").all()
    # one sampling rule: equal size (n_resample, conf/test) and label counts; different draws. Both draw with
    # replacement (the paper's resampling), so a variant is a multiset of synthetic_id: compare the counts per id
    random, mmd = (
        pd.read_parquet(data / "07_model_output" / f"synthetic_synalign_{name}.parquet") for name in ("random", "mmd")
    )
    assert len(random) == len(mmd) == 24
    assert random["label"].value_counts().to_dict() == mmd["label"].value_counts().to_dict()
    drawn = {name: frame["synthetic_id"].value_counts().to_dict() for name, frame in (("random", random), ("mmd", mmd))}
    assert drawn["random"] != drawn["mmd"], drawn


def test_the_embedded_server_is_stopped_after_the_run(finished_project):
    assert orphaned_llama_servers() == []


def test_the_run_is_tracked_in_mlflow(finished_project):
    mlflow.set_tracking_uri(f"sqlite:///{finished_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["synalign_kedro_test"])
    assert len(runs) >= 1
    # the latest full run (the module's other tests add a generation-only run and a refused one)
    latest = runs[runs["metrics.evaluation_metrics.gold.accuracy"].notna()].iloc[0]
    for variant in VARIANTS:
        assert f"metrics.evaluation_metrics.{variant}.accuracy" in runs.columns, variant
    for metric in ("coverage_metrics.coverage_auc_gp", "alignment_final_loss", "llm.synalign.calls", "ab.mcnemar_p_value", "privacy.n_flagged"):
        assert f"metrics.{metric}" in runs.columns, metric
    assert latest["tags.env"] == "test"
    artifacts = {a.path for folder in ("evaluation", "reports") for a in mlflow.MlflowClient().list_artifacts(latest["run_id"], folder)}
    assert {"evaluation/evaluation_table.csv", "evaluation/evaluation_tsne.png", "reports/run_report.html"} <= artifacts
    assert latest["tags.device"].startswith(("cpu", "cuda"))


def test_a_second_run_makes_no_llm_call(finished_project):
    kedro_cli(finished_project, "--env", "test", "--pipeline", "generation")
    usage = json.loads((finished_project / TEST_DATA / "08_reporting" / "llm_usage_synalign.json").read_text())
    assert usage["calls"] == 0 and usage["cache_hits"] > 0

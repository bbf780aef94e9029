"""`kedro run --env test` end to end: real catalog, real hooks (kedro-mlflow), real embedder, real LLM server
(SmolLM2-135M), every pipeline. Then a second run, which must make no LLM call (everything cached)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.kedro_helpers import scratch_project

pytestmark = pytest.mark.slow

VARIANTS = {"gold", "simprompt", "attrprompt", "synalign_one_stage", "synalign_all", "synalign_random", "synalign_mmd"}


KEDRO = str(Path(sys.executable).with_name("kedro"))


def kedro_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`kedro run ...` as a user types it, in its own process (one MLflow run per command)."""
    env = {**os.environ, "DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([KEDRO, "run", *args], cwd=root, env=env, capture_output=True, text=True, timeout=1800)
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
    kedro_cli(root, "--env", "test")
    return root


def test_every_pipeline_wrote_its_outputs(finished_project):
    reporting = finished_project / "data" / "08_reporting"
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
    batches = pd.read_parquet(finished_project / "data" / "05_model_input" / "demonstration_batches.parquet")
    assert len(batches) > 0
    for method in ("simprompt", "attrprompt", "synalign_one_stage", "synalign"):
        pool = pd.read_parquet(finished_project / "data" / "07_model_output" / f"synthetic_pool_{method}.parquet")
        assert {"text", "label", "method", "raw_response"} <= set(pool.columns), method


def test_the_embedded_server_is_stopped_after_the_run(finished_project):
    assert orphaned_llama_servers() == []


def test_the_run_is_tracked_in_mlflow(finished_project):
    mlflow.set_tracking_uri(f"sqlite:///{finished_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["synalign_kedro_test"])
    assert len(runs) >= 1
    latest = runs.iloc[0]
    for variant in VARIANTS:
        assert f"metrics.evaluation_metrics.{variant}.accuracy" in runs.columns, variant
    for metric in ("coverage_metrics.coverage_auc_gp", "alignment_final_loss", "llm.synalign.calls", "ab.mcnemar_p_value", "privacy.n_flagged"):
        assert f"metrics.{metric}" in runs.columns, metric
    assert latest["tags.env"] == "test"
    assert latest["tags.device"].startswith(("cpu", "cuda"))


def test_a_second_run_makes_no_llm_call(finished_project):
    kedro_cli(finished_project, "--env", "test", "--pipeline", "generation")
    usage = json.loads((finished_project / "data" / "08_reporting" / "llm_usage_synalign.json").read_text())
    assert usage["calls"] == 0 and usage["cache_hits"] > 0

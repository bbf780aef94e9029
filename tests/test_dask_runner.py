"""The Dask runner on a real ``distributed.LocalCluster`` with two worker processes.

- A small pipeline: independent nodes run at the same time (each waits for the other: one after the other,
  they would time out), in-memory data crosses workers, an error reaches the caller.
- ``kedro run --env test`` through the CLI, sequential first (it fills the LLM and embedding caches), then on the
  cluster: the same pools and the same evaluation table, no LLM call (so no llama.cpp server per worker), one
  MLflow run per command.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cloudpickle
import mlflow
import pandas as pd
import pytest
from distributed import Client, Event, LocalCluster
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node

from synalign_kedro.runners import DaskRunner
from tests.kedro_helpers import scratch_project

pytestmark = pytest.mark.slow

METHODS = ("simprompt", "attrprompt", "synalign_one_stage", "synalign")
KEDRO = str(Path(sys.executable).with_name("kedro"))
# The node functions below travel to the workers by value (the workers cannot import the tests package).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def kedro_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`kedro run ...` as a user types it, in its own process (one MLflow run per command)."""
    env = {**os.environ, "DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([KEDRO, "run", *args], cwd=root, env=env, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return scratch_project(tmp_path_factory.mktemp("dask"))


@pytest.fixture(scope="module")
def cluster(project):
    """Two worker processes, one thread each, started in the project root (workers keep their start directory)."""
    with contextlib.chdir(project):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    yield cluster
    cluster.close()


def nodes_run_here(dask_worker) -> list[str]:
    """Names of the Kedro nodes this worker executed (from the worker's own transition log)."""
    return sorted(
        entry[0].split(":", 1)[1]
        for entry in dask_worker.state.log
        if len(entry) > 3 and isinstance(entry[0], str) and entry[0].startswith("kedro-") and entry[1:3] == ("executing", "memory")
    )


def nodes_per_worker(cluster) -> dict[str, list[str]]:
    with Client(cluster) as client:
        return client.run(nodes_run_here)


def meet(name: str, other: str, value: int) -> int:
    """Set this node's event, then wait for the other node's: succeeds only if both run at the same time."""
    Event(name).set()
    if not Event(other).wait(timeout=120):
        raise TimeoutError(f"{name} ran alone: {other} did not start within 120 s")
    return value


def meet_left(x: int) -> int:
    return meet("left", "right", x + 1)


def meet_right(x: int) -> int:
    return meet("right", "left", x * 10)


def combine(left: int, right: int) -> dict:
    return {"left": left, "right": right, "sum": left + right}


def fail(x: int) -> int:
    raise ValueError(f"node failed on input {x}")


def small_pipeline() -> Pipeline:
    return Pipeline(
        [
            node(meet_left, "x", "left", name="left"),
            node(meet_right, "x", "right", name="right"),
            node(combine, ["left", "right"], "combined", name="combine"),
        ]
    )


def test_a_small_pipeline_runs_with_its_independent_nodes_in_parallel(cluster):
    catalog = DataCatalog({"x": MemoryDataset(4)})
    outputs = DaskRunner(address=cluster.scheduler_address, check_working_directory=False).run(small_pipeline(), catalog)

    assert set(outputs) == {"combined"}  # a free output comes back into the driver's catalog
    assert catalog.load("combined") == {"left": 5, "right": 40, "sum": 45}
    with Client(cluster) as client:  # intermediate data is released from the cluster after the run
        assert not [name for name in client.list_datasets() if str(name).startswith("kedro-")]


def test_a_node_error_reaches_the_caller(cluster):
    pipeline = Pipeline([node(fail, "x", "y", name="fail"), node(combine, ["y", "y"], "z", name="after")])
    with pytest.raises(ValueError, match="node failed on input 3"):
        DaskRunner(address=cluster.scheduler_address, check_working_directory=False).run(pipeline, DataCatalog({"x": MemoryDataset(3)}))


def test_workers_outside_the_project_are_refused(cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the driver now runs somewhere else than the workers
    pipeline = Pipeline([node(combine, ["x", "x"], "y", name="combine")])
    with pytest.raises(RuntimeError, match="start every worker from the project root"):
        DaskRunner(address=cluster.scheduler_address).run(pipeline, DataCatalog({"x": MemoryDataset(1)}))


def test_a_worker_with_its_own_endpoint_sends_its_nodes_llm_calls_there(monkeypatch):
    from synalign_kedro.runners.dask_runner import WORKER_LLM_BASE_URL_ENV, _worker_llm_override

    def catalog():
        return DataCatalog({"params:llm": MemoryDataset({"model": "m", "base_url": None}), "params:other": MemoryDataset({"base_url": None})})

    uses_llm = node(combine, ["params:llm", "params:other"], "out", name="uses_llm")
    no_llm = node(combine, ["params:other", "params:other"], "out", name="no_llm")
    unchanged = catalog()
    _worker_llm_override(unchanged, uses_llm)  # a worker started without the variable: base settings
    assert unchanged.load("params:llm") == {"model": "m", "base_url": None}

    monkeypatch.setenv(WORKER_LLM_BASE_URL_ENV, "http://127.0.0.1:8000/v1")
    overridden = catalog()
    _worker_llm_override(overridden, uses_llm)
    assert overridden.load("params:llm") == {"model": "m", "base_url": "http://127.0.0.1:8000/v1"}
    assert overridden.load("params:other") == {"base_url": None}
    untouched = catalog()
    _worker_llm_override(untouched, no_llm)
    assert untouched.load("params:llm")["base_url"] is None


def test_the_scheduler_address_comes_from_the_runner_arguments_then_the_env_parameters():
    catalog = DataCatalog({"params:dask_client": MemoryDataset({"address": "tcp://scheduler:8786", "timeout": 5})})
    assert DaskRunner()._settings(catalog).address == "tcp://scheduler:8786"  # conf/dask/parameters_dask.yml
    from_arguments = DaskRunner(address="tcp://other:8786")._settings(catalog)  # --runner-params address=...
    assert (from_arguments.address, from_arguments.timeout) == ("tcp://other:8786", 5)
    assert DaskRunner()._settings(DataCatalog()).address is None  # Dask's own config, else a LocalCluster
    with pytest.raises(ValueError, match="Invalid `dask_client` parameters"):
        DaskRunner()._settings(DataCatalog({"params:dask_client": MemoryDataset({"adress": "tcp://x:1"})}))


def test_a_bad_runner_argument_fails_before_the_run():
    with pytest.raises(ValueError, match="timeout"):
        DaskRunner(timeout=-1)


# --- kedro run --env test, sequential and on the cluster -------------------------------------------------------

TEST_DATA = Path("data") / "test_env"  # the test env's outputs (catalog global base_location, conf/test/globals.yml)
REPORTING = TEST_DATA / "08_reporting"
CACHES = {Path("data") / "02_intermediate" / "llm_cache_test", Path("data") / "04_feature" / "embedding_cache"}


def results(root: Path) -> dict[str, pd.DataFrame]:
    tables = {
        method: pd.read_parquet(root / TEST_DATA / "07_model_output" / f"synthetic_pool_{method}.parquet") for method in METHODS
    }
    tables["evaluation"] = pd.read_csv(root / REPORTING / "evaluation_table.csv")
    return tables


def remove_run_outputs(root: Path) -> None:
    """Everything the run wrote, except the raw data and the LLM / embedding caches."""
    for layer in sorted((root / "data").iterdir()):
        if layer.name == "01_raw":
            continue
        for item in layer.iterdir():
            if item.relative_to(root) in CACHES:
                continue
            shutil.rmtree(item) if item.is_dir() else item.unlink()


@pytest.fixture(scope="module")
def sequential_then_dask(project, cluster):
    kedro_cli(project, "--env", "test")
    sequential = results(project)
    remove_run_outputs(project)
    before = nodes_per_worker(cluster)
    kedro_cli(
        project, "--env", "test",
        "--runner", "synalign_kedro.runners.DaskRunner",
        "--runner-params", f"address={cluster.scheduler_address}",
    )  # fmt: skip
    after = nodes_per_worker(cluster)
    ran = {worker: sorted(set(after[worker]) - set(before.get(worker, []))) for worker in after}
    return sequential, results(project), ran


def test_the_dask_run_gives_the_sequential_pools(sequential_then_dask):
    sequential, dask, _ = sequential_then_dask
    # SmolLM2-135M may well fail every call of one method (its pool is then empty); not all of them.
    assert sum(len(sequential[method]) for method in METHODS) > 0
    for method in METHODS:
        pd.testing.assert_frame_equal(dask[method], sequential[method], obj=f"synthetic_pool_{method}")


def test_the_dask_run_gives_the_sequential_evaluation_table(sequential_then_dask):
    sequential, dask, _ = sequential_then_dask
    pd.testing.assert_frame_equal(dask["evaluation"], sequential["evaluation"], obj="evaluation_table")


def test_both_workers_ran_nodes_of_the_project(sequential_then_dask, project):
    _, _, ran = sequential_then_dask
    assert len(ran) == 2 and all(ran.values()), ran
    names = {name for names in ran.values() for name in names}
    assert {f"{method}.generate_synthetic_pool" for method in METHODS} <= names
    assert not set.intersection(*(set(names) for names in ran.values())), "a node ran twice"


def test_the_dask_run_made_no_llm_call(sequential_then_dask, project):
    for method in METHODS:
        usage = json.loads((project / REPORTING / f"llm_usage_{method}.json").read_text())
        assert usage["calls"] == 0 and usage["cache_hits"] > 0, (method, usage)


def test_the_dask_run_is_one_finished_mlflow_run_with_the_workers_metrics(sequential_then_dask, project):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["synalign_kedro_test"], order_by=["start_time DESC"])
    assert len(runs) == 2  # the sequential run and the Dask run: no run opened by a worker
    latest = runs.iloc[0]
    assert latest["status"] == "FINISHED"
    assert "DaskRunner" in latest["tags.runner"]
    for metric in ("evaluation_metrics.gold.accuracy", "alignment_final_loss", "llm.synalign.cache_hits"):
        assert pd.notna(latest[f"metrics.{metric}"]), metric
    evaluation = results(project)["evaluation"].set_index("variant")
    assert latest["metrics.evaluation_metrics.gold.accuracy"] == pytest.approx(evaluation.loc["gold", "accuracy"])

"""``DaskRunner``: run a Kedro pipeline on a ``dask.distributed`` cluster, one Dask task per node.

Adapted from Kedro's deployment guide ("Distributed deployment / Dask", docs/deploy/supported-platforms/dask.md)
to Kedro 1.7's ``AbstractRunner``:

- every node becomes one Dask task whose dependencies are the tasks of the nodes it reads from, so independent
  nodes (the namespaced generation methods, the evaluation variants, ...) run in parallel on the workers;
- datasets the catalog keeps in memory (``MemoryDataset``, e.g. ``<method>.prompts``) cannot cross processes:
  they become :class:`_DaskDataset` objects, whose data stays on the worker that produced it and is published
  on the scheduler under a per-run name (the guide publishes the data itself on the scheduler; a published
  future keeps large arrays off the scheduler);
- the node and dataset hooks run on the worker, with the driver's hook objects (the guide registers fresh
  ones on each worker: kedro-mlflow's hook would then open a new MLflow run per node). The worker attaches the
  node's thread to the driver's MLflow run and detaches it afterwards without ending it.

Where the scheduler is (first match wins):

1. the runner's arguments: ``kedro run --runner synalign_kedro.runners.DaskRunner --runner-params
   address=tcp://host:8786`` (Kedro 1.7 passes ``--runner-params`` to the runner's constructor);
2. the ``dask_client`` parameters of the active env: ``kedro run --env dask --runner ...`` reads
   ``conf/dask/parameters_dask.yml`` (the layout of Kedro's guide, whose custom ``cli.py`` is not needed: the
   runner reads ``params:dask_client`` from the catalog it is given);
3. Dask's own configuration (``DASK_SCHEDULER_ADDRESS``, or ``scheduler-address`` in a Dask YAML file), which
   ``distributed.Client`` reads itself;
4. otherwise ``distributed.Client()`` starts a ``LocalCluster`` on this machine for the run.

Workers must run in the project root, at the same absolute path as the driver (Kedro makes catalog paths
absolute, and the LLM and embedding caches are relative to the working directory): see ``docs/scale_out.md``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections import Counter
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
from distributed import Client, as_completed, get_client
from kedro.io import AbstractDataset, MemoryDataset
from kedro.runner import AbstractRunner
from kedro.runner.task import Task
from pluggy import PluginManager
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node

logger = logging.getLogger(__name__)

CLIENT_PARAMETERS = "dask_client"
# Set on a worker (e.g. `SYNALIGN_LLM_BASE_URL=http://127.0.0.1:8000/v1 dask worker ...`), it points the nodes
# that run on that worker at their own OpenAI-compatible endpoint (one vLLM server per GPU machine).
WORKER_LLM_BASE_URL_ENV = "SYNALIGN_LLM_BASE_URL"


class DaskClientSettings(BaseModel):
    """The ``dask_client:`` parameter block (``conf/dask/parameters_dask.yml``); unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None,
        description="scheduler address, e.g. tcp://scheduler:8786; null = DASK_SCHEDULER_ADDRESS, else a LocalCluster",
    )
    timeout: float = Field(30.0, gt=0, description="seconds to wait for the scheduler")
    check_working_directory: bool = Field(
        True, description="refuse workers that do not run in the driver's project directory"
    )


class _DaskDataset(AbstractDataset):
    """A dataset held by the Dask cluster: the data stays on the worker that saved it, published under a name.

    Replaces the catalog's ``MemoryDataset`` objects for a Dask run (a ``MemoryDataset`` lives in one process).
    """

    _EPHEMERAL = True  # gone after the run: Kedro's resume suggestion re-runs the nodes that make it

    def __init__(self, name: str) -> None:
        self._name = name

    def _load(self) -> Any:
        return get_client().get_dataset(self._name).result()

    def _save(self, data: Any) -> None:
        client = get_client()
        [future] = client.scatter([data], hash=False)
        client.publish_dataset(future, name=self._name, override=True)

    def _exists(self) -> bool:
        return self._name in get_client().list_datasets()

    def _release(self) -> None:
        client = get_client()
        if self._name in client.list_datasets():
            client.unpublish_dataset(self._name)

    def _describe(self) -> dict[str, Any]:
        return {"name": self._name}


@contextlib.contextmanager
def _replacing_datasets():
    """The catalog warns about every dataset it replaces; the runner replaces some on purpose."""
    catalog_logger = logging.getLogger("kedro.io.data_catalog")
    level = catalog_logger.level
    catalog_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        catalog_logger.setLevel(level)


def _worker_llm_override(catalog: CatalogProtocol, node: Node) -> None:
    """Point this node's ``params:llm`` at the worker's own endpoint when the worker names one."""
    base_url = os.environ.get(WORKER_LLM_BASE_URL_ENV)
    if not base_url or "params:llm" not in node.inputs:
        return
    llm = dict(catalog.load("params:llm"))
    llm["base_url"] = base_url
    with _replacing_datasets():
        catalog["params:llm"] = MemoryDataset(llm)


def _run_node_on_worker(node: Node, catalog: CatalogProtocol, context: dict[str, Any], *dependencies: Any) -> str:
    """Run one node on a Dask worker; ``dependencies`` are the upstream nodes' results, only waited for."""
    from kedro.framework.hooks.manager import _create_hook_manager
    from kedro.framework.project import PACKAGE_NAME, configure_project

    if PACKAGE_NAME != context["package_name"]:
        configure_project(context["package_name"])
    if context["check_working_directory"] and Path.cwd().resolve() != Path(context["project_path"]):
        raise RuntimeError(
            f"Dask worker runs in {Path.cwd()}, but the project is at {context['project_path']}: start every worker "
            "from the project root, at the same path on every machine (see docs/scale_out.md)"
        )
    # Each task unpickles its own copy of the catalog, so the override below stays local to this node.
    _worker_llm_override(catalog, node)

    hook_manager = _create_hook_manager()
    for name, plugin in cloudpickle.loads(context["hook_plugins"]):
        hook_manager.register(plugin, name=name)

    _detach_from_mlflow_runs()  # anything a crashed earlier task left on this (reused) thread
    if context["mlflow_run_id"]:
        import mlflow

        mlflow.set_tracking_uri(context["mlflow_tracking_uri"])
        mlflow.start_run(run_id=context["mlflow_run_id"])
    try:
        Task(node=node, catalog=catalog, hook_manager=hook_manager, is_async=context["is_async"], run_id=context["run_id"]).execute()
    finally:
        _detach_from_mlflow_runs()
    return node.name


def _detach_from_mlflow_runs() -> None:
    """Pop this thread's active MLflow runs without changing their status: the driver that opened a run ends it.

    ``mlflow.end_run`` always writes a status, so it is given the run's current one (RUNNING while the driver
    runs; a run the driver already marked FAILED stays FAILED). kedro-mlflow's node hook may push the run more
    than once, hence the loop.
    """
    if "mlflow" not in sys.modules:  # never imported in this process: no run can be active
        return
    import mlflow

    while (run := mlflow.active_run()) is not None:
        mlflow.end_run(status=mlflow.MlflowClient().get_run(run.info.run_id).info.status)


def _stop_worker_llm_servers() -> None:
    """Stop the embedded llama.cpp servers this worker process started (as the LLM server hook does locally)."""
    from synalign_kedro.core import llm_server

    llm_server.stop_all()


class DaskRunner(AbstractRunner):
    """Runs each node of a pipeline as a ``dask.distributed`` task, following the inter-node dependencies.

    ``kedro run --runner synalign_kedro.runners.DaskRunner --env dask`` (scheduler address in
    ``conf/dask/parameters_dask.yml``); see the module docstring for how the scheduler is found.
    """

    def __init__(
        self,
        address: str | None = None,
        timeout: float | None = None,
        check_working_directory: bool | None = None,
        is_async: bool = False,
    ) -> None:
        """Arguments given here (``--runner-params address=tcp://host:8786``) override the ``dask_client``
        parameters of the env; see the module docstring for how the scheduler is found otherwise.

        Args:
            address: the scheduler, e.g. ``tcp://scheduler:8786``.
            timeout: seconds to wait for the scheduler.
            check_working_directory: refuse workers that do not run in the driver's project directory.
            is_async: load and save a node's datasets with threads (``--runner-params is_async=true``).
        """
        super().__init__(is_async=is_async)
        given = {"address": address, "timeout": timeout, "check_working_directory": check_working_directory}
        self._runner_args = {key: value for key, value in given.items() if value is not None}
        DaskClientSettings(**self._runner_args)  # a bad argument fails before the run starts

    def _get_executor(self, max_workers: int) -> None:
        return None  # Dask schedules the tasks: _run is overridden

    def _settings(self, catalog: CatalogProtocol) -> DaskClientSettings:
        name = f"params:{CLIENT_PARAMETERS}"
        from_env = (catalog.load(name) or {}) if name in catalog else {}
        try:
            return DaskClientSettings(**{**from_env, **self._runner_args})
        except ValueError as error:
            raise ValueError(f"Invalid `{CLIENT_PARAMETERS}` parameters (conf/<env>/parameters_dask.yml): {error}") from error

    def _connect(self, settings: DaskClientSettings) -> Client:
        if settings.address:
            logger.info("Connecting to the Dask scheduler at %s", settings.address)
            return Client(settings.address, timeout=settings.timeout)
        client = Client(timeout=settings.timeout)  # DASK_SCHEDULER_ADDRESS / Dask config, else a LocalCluster
        logger.info("Dask scheduler: %s", client.scheduler.address)
        return client

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        settings = self._settings(catalog)
        client = self._connect(settings)
        prefix = f"kedro-{run_id or uuid.uuid4().hex}:"
        try:
            self._run_on(client, prefix, settings, pipeline, catalog, hook_manager, run_id)
        finally:
            try:
                client.run(_stop_worker_llm_servers)
            except Exception as error:  # pragma: no cover - never mask the run's own error
                logger.warning("Could not stop the workers' LLM servers: %s", error)
            for name in list(client.list_datasets()):
                if name.startswith(prefix):
                    client.unpublish_dataset(name)
            client.close()

    def _run_on(
        self,
        client: Client,
        prefix: str,
        settings: DaskClientSettings,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None,
        run_id: str | None,
    ) -> None:
        context = self._worker_context(settings, hook_manager, run_id, self._is_async)
        self._move_memory_datasets_to_the_cluster(client, prefix, pipeline, catalog)

        node_dependencies = pipeline.node_dependencies
        futures = {}
        for node in pipeline.nodes:  # topologically sorted: dependencies are submitted first
            dependencies = [futures[dependency] for dependency in node_dependencies[node]]
            futures[node] = client.submit(
                _run_node_on_worker, node, catalog, context, *dependencies,
                key=f"{prefix}{node.name}", pure=False,
            )  # fmt: skip

        load_counts = Counter(chain.from_iterable(n.inputs for n in pipeline.nodes))
        node_of = {future.key: node for node, future in futures.items()}
        done_nodes: set[Node] = set()
        try:
            for future in as_completed(list(futures.values())):
                node = node_of[future.key]
                future.result()  # raises the node's error here, with the worker's traceback
                done_nodes.add(node)
                self._logger.info("Completed node: %s", node.name)
                self._logger.info("Completed %d out of %d tasks", len(done_nodes), len(pipeline.nodes))
                self._release_datasets(node, catalog, load_counts, pipeline)
        except BaseException:
            client.cancel(list(futures.values()))
            self._suggest_resume_scenario(pipeline, done_nodes, catalog)
            raise
        self._bring_back_free_outputs(pipeline, catalog)

    @staticmethod
    def _worker_context(
        settings: DaskClientSettings, hook_manager: PluginManager | None, run_id: str | None, is_async: bool
    ) -> dict[str, Any]:
        from kedro.framework.project import PACKAGE_NAME

        plugins = []
        if isinstance(hook_manager, PluginManager):  # not kedro's _NullPluginManager (a run without a session)
            plugins = [(name, plugin) for name, plugin in hook_manager.list_name_plugin() if plugin is not None]
        mlflow_run_id = tracking_uri = None
        try:
            import mlflow

            if mlflow.active_run():
                mlflow_run_id = mlflow.active_run().info.run_id
                tracking_uri = mlflow.get_tracking_uri()
        except ImportError:  # pragma: no cover - mlflow is a dependency of the project
            pass
        return {
            "package_name": PACKAGE_NAME or "synalign_kedro",
            "project_path": str(Path.cwd().resolve()),
            "check_working_directory": settings.check_working_directory,
            "hook_plugins": cloudpickle.dumps(plugins),
            "mlflow_run_id": mlflow_run_id,
            "mlflow_tracking_uri": tracking_uri,
            "run_id": run_id,
            "is_async": is_async,
        }

    @staticmethod
    def _move_memory_datasets_to_the_cluster(client: Client, prefix: str, pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        """Replace each in-memory dataset of the pipeline by a :class:`_DaskDataset` (publishing any data it holds)."""
        for name in sorted(pipeline.datasets()):
            if name == "parameters" or name.startswith("params:"):
                continue  # read-only values: they travel with the catalog
            dataset = catalog.get(name, fallback_to_runtime_pattern=True)
            if not isinstance(dataset, MemoryDataset):
                continue
            if dataset.exists():
                [future] = client.scatter([dataset.load()], hash=False)
                client.publish_dataset(future, name=prefix + name, override=True)
            with _replacing_datasets():
                catalog[name] = _DaskDataset(prefix + name)

    @staticmethod
    def _bring_back_free_outputs(pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        """Pipeline outputs that lived on the cluster come back into the driver's catalog, as with Kedro's runners."""
        for name in pipeline.outputs():
            dataset = catalog.get(name)
            if isinstance(dataset, _DaskDataset):
                with _replacing_datasets():
                    catalog[name] = MemoryDataset(dataset.load())

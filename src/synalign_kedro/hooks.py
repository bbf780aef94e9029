"""Kedro hooks: parameters validated before the first node, the embedded LLM server's lifecycle, run
information (device, timings), and a summary at the end of the run (what each method generated and kept, the
run report's answer, where the report is).

The embedded llama.cpp server is started lazily by the first node that needs it
(``core.llm_server.embedded_endpoint``), so a run whose LLM calls are all cached starts no server; this
hook makes sure it is stopped when the run ends, fails, or is interrupted.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from synalign_kedro.core import llm_server
from synalign_kedro.core.variants import GENERATION_METHODS, usage_dataset

logger = logging.getLogger(__name__)

# The catalog names the end-of-run summary reads besides each method's usage report (core/variants.py).
EVALUATION_TABLE = "evaluation_table"
RUN_REPORT = "run_report"


def _mlflow_active() -> bool:
    try:
        import mlflow

        return mlflow.active_run() is not None
    except Exception:  # pragma: no cover - mlflow is a hard dependency, but never fail a run for tracking
        return False


class ParameterValidationHook:
    """Validates every parameter block with its settings model (``core.parameters``) before the first node
    runs, so ``--params seed=abc`` or a misspelt key fails at once with a message naming the parameter.
    ``tryfirst``: before kedro-mlflow's own hook opens a run, so bad parameters leave no empty MLflow run."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        if "parameters" not in catalog:  # pragma: no cover - Kedro always adds it
            return
        from synalign_kedro.core.parameters import validate_parameters  # torch et al.: not at CLI start-up

        validate_parameters(catalog.load("parameters"))


class LLMServerHook:
    """Stops every embedded LLM server when the pipeline ends, fails, or gets SIGTERM/SIGINT."""

    def __init__(self) -> None:
        self._previous_handlers: dict[int, Any] = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        # API keys for remote endpoints live in conf/<env>/credentials.yml under `llm`; they are handed to
        # the core registry here and never pass through parameters (so never reach logs or MLflow params).
        try:
            credentials = context.config_loader["credentials"]
        except Exception:  # no credentials file at all is fine
            credentials = {}
        llm_credentials = (credentials or {}).get("llm") or {}
        if llm_credentials.get("api_key"):
            llm_server.register_api_key(llm_credentials["api_key"])

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        for sig in (signal.SIGTERM,):
            try:
                self._previous_handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not in the main thread (e.g. kedro-viz): nothing to install
                pass

    def _on_signal(self, signum, frame) -> None:
        logger.warning("Signal %s received: stopping embedded LLM servers", signum)
        llm_server.stop_all()
        raise KeyboardInterrupt(f"signal {signum}")

    def _restore(self) -> None:
        for sig, handler in self._previous_handlers.items():
            try:
                signal.signal(sig, handler)
            except (ValueError, TypeError):
                pass
        self._previous_handlers.clear()

    @hook_impl
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        llm_server.stop_all()
        self._restore()

    @hook_impl
    def on_pipeline_error(self, error, run_params, pipeline, catalog) -> None:
        llm_server.stop_all()
        self._restore()


class MlflowArtifactHook:
    """Logs every output file whose catalog entry has ``metadata: {mlflow_artifact_path: <folder>}`` as an
    MLflow artifact, at the end of a successful run, in the main process.

    Why not kedro-mlflow's ``MlflowArtifactDataset``: it wraps a dataset in a class built at run time, which
    ParallelRunner cannot pickle ("datasets cannot be used with multiprocessing"); and dataset hooks do not run
    under ParallelRunner. ``tryfirst``: runs before kedro-mlflow's own ``after_pipeline_run`` ends the run.
    """

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        if not _mlflow_active():
            return
        import mlflow

        for name in sorted(pipeline.datasets()):
            path = artifact_file(catalog, name)
            if path is not None:
                mlflow.log_artifact(str(path[0]), path[1])


def artifact_file(catalog, name: str) -> tuple[Path, str] | None:
    """(local file, MLflow artifact folder) of a catalog entry marked ``mlflow_artifact_path``, when written."""
    if name not in catalog:
        return None
    dataset = catalog.get(name)
    folder = (getattr(dataset, "metadata", None) or {}).get("mlflow_artifact_path")
    if not folder:
        return None
    path = local_file(catalog, name)
    return None if path is None else (path, str(folder))


def local_file(catalog, name: str) -> Path | None:
    """The local file of a catalog entry (its ``filepath``), when the entry exists and the file was written."""
    if name not in catalog:
        return None
    dataset = catalog.get(name)
    describe = dataset._describe() if hasattr(dataset, "_describe") else {}
    filepath = describe.get("filepath") or getattr(dataset, "_filepath", None)
    if filepath is None or not Path(str(filepath)).is_file():
        return None
    return Path(str(filepath))


class RunSummaryHook:
    """At the end of a successful ``kedro run``, logs a short summary (:func:`run_summary`): per generation
    method, samples kept / requested and tokens; the run report's answer (did the synthetic data help, is it
    close to the real data); where the report is. It never fails the run: a missing or unreadable dataset is
    left out, and any other error only becomes a warning."""

    @hook_impl(trylast=True)  # the last thing a run logs
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        try:
            lines = run_summary(catalog, pipeline)
        except Exception as error:  # a summary must never fail a run that succeeded
            logger.warning("No end-of-run summary: %s: %s", type(error).__name__, error)
            return
        if lines:
            logger.info("Run summary:\n  %s", "\n  ".join(lines))


def run_summary(catalog, pipeline=None) -> list[str]:
    """The summary's lines. Reads ``llm_usage_<method>`` for every method of ``core/variants.py``, the
    evaluation table and the report's file through ``catalog``; what does not exist is skipped. A dataset that
    ``pipeline`` did not write is marked "from an earlier run"."""
    written = _outputs(pipeline)
    lines = []
    for method in GENERATION_METHODS:
        name = usage_dataset(method)
        usage = _load_if_present(catalog, name)
        if isinstance(usage, dict):
            lines.append(_usage_line(method, usage) + _earlier(name, written))
    table = _load_if_present(catalog, EVALUATION_TABLE)
    if table is not None:
        from synalign_kedro.core.report import answer_lines  # pandas, scipy: not at CLI start-up

        suffix = _earlier(EVALUATION_TABLE, written)
        lines += [f"answer: {line}{suffix}" for line in answer_lines(table)]
    report = local_file(catalog, RUN_REPORT)
    if report is not None:
        lines.append(f"run report: {_relative_to_cwd(report)}{_earlier(RUN_REPORT, written)}")
    return lines


def _usage_line(method: str, usage: dict) -> str:
    kept, requested = usage.get("n_samples_generated", "?"), usage.get("n_samples_requested", "?")
    line = f"{method}: {kept}/{requested} samples kept"
    if "calls" in usage:
        line += f", {usage['calls']} LLM calls ({usage.get('cache_hits', 0)} from the cache)"
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        line += f", {usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion tokens"
    return line


def _load_if_present(catalog, name: str) -> Any:
    """``catalog.load(name)`` when the entry exists and its data was saved; None otherwise (logged at debug)."""
    try:
        if name not in catalog or not catalog.exists(name):
            return None
        return catalog.load(name)
    except Exception as error:  # unreadable: the summary goes on without it
        logger.debug("Run summary: %s not read (%s)", name, error)
        return None


def _outputs(pipeline) -> set[str] | None:
    try:
        return set(pipeline.all_outputs()) if pipeline is not None else None
    except Exception:  # not a Kedro pipeline: no claim about what it wrote
        return None


def _earlier(name: str, written: set[str] | None) -> str:
    return "" if written is None or name in written else " (from an earlier run)"


def _relative_to_cwd(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


class RunInfoHook:
    """Logs node timings and the torch device; sends them to MLflow when a run is active."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        from synalign_kedro.core.device import describe_device, resolve_device

        device = describe_device(resolve_device("auto"))
        logger.info("Run env=%s, device=%s", run_params.get("env") or "local", device)
        if _mlflow_active():  # kedro-mlflow already tags the env
            import mlflow

            mlflow.set_tag("device", device)

    @hook_impl
    def before_node_run(self, node) -> None:
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        seconds = time.perf_counter() - self._started.pop(node.name, time.perf_counter())
        logger.info("Node %s took %.2f s", node.name, seconds)
        if _mlflow_active():
            import mlflow

            safe = "".join(c if c.isalnum() or c in "._-/" else "_" for c in node.name)
            mlflow.log_metric(f"node_seconds/{safe}", seconds)

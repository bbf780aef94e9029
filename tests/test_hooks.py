"""The project's Kedro hooks (hooks.py), called as Kedro calls them (parameter validation: tests/test_parameters.py)."""

from __future__ import annotations

import logging
import signal
from types import SimpleNamespace

import pandas as pd
import pytest

from synalign_kedro import hooks


@pytest.fixture
def recorded(monkeypatch):
    calls: list[tuple] = []
    monkeypatch.setattr(hooks.llm_server, "stop_all", lambda: calls.append(("stop_all",)))
    monkeypatch.setattr(hooks.llm_server, "register_api_key", lambda key: calls.append(("key", key)))
    return calls


def test_the_api_key_goes_from_credentials_to_the_llm_client_only(recorded):
    hook = hooks.LLMServerHook()
    hook.after_context_created(
        SimpleNamespace(config_loader={"credentials": {"llm": {"api_key": "sk-test"}}})
    )
    assert recorded == [("key", "sk-test")]
    recorded.clear()
    hook.after_context_created(SimpleNamespace(config_loader={"credentials": {}}))
    hook.after_context_created(SimpleNamespace(config_loader={}))  # no credentials file at all
    assert recorded == []


@pytest.mark.parametrize("ending", ["after_pipeline_run", "on_pipeline_error"])
def test_servers_stop_and_the_sigterm_handler_is_restored(recorded, ending):
    previous = signal.getsignal(signal.SIGTERM)
    hook = hooks.LLMServerHook()
    hook.before_pipeline_run(run_params={}, pipeline=None, catalog=None)
    assert signal.getsignal(signal.SIGTERM) == hook._on_signal
    if ending == "after_pipeline_run":
        hook.after_pipeline_run(run_params={}, run_result={}, pipeline=None, catalog=None)
    else:
        hook.on_pipeline_error(error=RuntimeError("x"), run_params={}, pipeline=None, catalog=None)
    assert recorded == [("stop_all",)]
    assert signal.getsignal(signal.SIGTERM) == previous


def test_sigterm_stops_the_servers_and_interrupts_the_run(recorded):
    hook = hooks.LLMServerHook()
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        hook._on_signal(signal.SIGTERM, None)
    assert recorded == [("stop_all",)]


def test_node_timings_are_logged(caplog, monkeypatch):
    monkeypatch.setattr(hooks, "_mlflow_active", lambda: False)
    hook = hooks.RunInfoHook()
    node = SimpleNamespace(name="simprompt.generate_synthetic_pool")
    with caplog.at_level(logging.INFO, logger="synalign_kedro.hooks"):
        hook.before_pipeline_run(run_params={"env": "test"}, pipeline=None, catalog=None)
        hook.before_node_run(node)
        hook.after_node_run(node)
    assert "Run env=test, device=" in caplog.text
    assert "Node simprompt.generate_synthetic_pool took" in caplog.text
    assert hook._started == {}


def _usage(kept: int, requested: int) -> dict:
    """The shape of a generation pool's usage report (core/generation/pool.py)."""
    return {
        "method": "x",
        "n_samples_requested": requested,
        "n_samples_generated": kept,
        "calls": 4,
        "cache_hits": 1,
        "prompt_tokens": 1200,
        "completion_tokens": 340,
    }


def test_the_run_summary_logs_kept_counts_answer_and_report_path(caplog, tmp_path, monkeypatch):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro_datasets.text import TextDataset

    from synalign_kedro.core.variants import GENERATION_METHODS, usage_dataset

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run_report.html").write_text("<html></html>")
    table = pd.DataFrame(
        {
            "variant": ["gold", "synalign_mmd"],
            "accuracy": [0.80, 0.83],
            "accuracy_per_seed": ["[0.8, 0.79, 0.81]", "[0.83, 0.82, 0.84]"],
            "mmd": [0.004, 0.012],
        }
    )
    datasets = {
        usage_dataset(method): MemoryDataset(_usage(7 + i, 8)) for i, method in enumerate(GENERATION_METHODS)
    }
    catalog = DataCatalog(
        datasets={
            **datasets,
            "evaluation_table": MemoryDataset(table),
            "run_report": TextDataset(filepath=str(tmp_path / "run_report.html")),
        }
    )
    with caplog.at_level(logging.INFO, logger="synalign_kedro.hooks"):
        hooks.RunSummaryHook().after_pipeline_run(
            run_params={}, run_result={}, pipeline=None, catalog=catalog
        )
    text = caplog.text
    for i, method in enumerate(GENERATION_METHODS):  # every method of the registry, however many
        assert (
            f"{method}: {7 + i}/8 samples kept, 4 LLM calls (1 from the cache), 1200 prompt + 340 completion"
            in text
        )
    assert "answer: synalign_mmd: +0.0300 accuracy [" in text and "vs real alone (gold)" in text
    assert "run report: run_report.html" in text


def test_the_run_summary_skips_what_is_missing_and_never_raises(caplog):
    from kedro.io import DataCatalog, MemoryDataset

    from synalign_kedro.core.variants import GENERATION_METHODS, usage_dataset

    class Broken(MemoryDataset):
        def load(self):
            raise OSError("unreadable")

    first = GENERATION_METHODS[0]
    catalog = DataCatalog(
        datasets={
            usage_dataset(first): MemoryDataset(_usage(3, 8)),
            "evaluation_table": Broken(pd.DataFrame()),
        }
    )
    assert hooks.run_summary(catalog) == [
        f"{first}: 3/8 samples kept, 4 LLM calls (1 from the cache), 1200 prompt + 340 completion tokens"
    ]
    assert hooks.run_summary(DataCatalog()) == []
    with caplog.at_level(logging.INFO, logger="synalign_kedro.hooks"):
        hook = hooks.RunSummaryHook()
        hook.after_pipeline_run(run_params={}, run_result={}, pipeline=None, catalog=DataCatalog())
        hook.after_pipeline_run(
            run_params={}, run_result={}, pipeline=None, catalog=object()
        )  # not a catalog
    assert "Run summary" not in caplog.text and "No end-of-run summary" in caplog.text


def test_the_run_summary_marks_what_an_earlier_run_wrote():
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Pipeline, node

    from synalign_kedro.core.variants import GENERATION_METHODS, usage_dataset

    first = GENERATION_METHODS[0]
    catalog = DataCatalog(datasets={usage_dataset(first): MemoryDataset(_usage(8, 8))})
    evaluation_only = Pipeline([node(lambda x: x, "real_train", "evaluation_table", name="evaluate")])
    assert hooks.run_summary(catalog, evaluation_only)[0].endswith("tokens (from an earlier run)")

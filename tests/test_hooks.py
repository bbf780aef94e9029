"""The project's Kedro hooks (hooks.py), called as Kedro calls them (parameter validation: tests/test_parameters.py)."""

from __future__ import annotations

import logging
import signal
from types import SimpleNamespace

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
    hook.after_context_created(SimpleNamespace(config_loader={"credentials": {"llm": {"api_key": "sk-test"}}}))
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

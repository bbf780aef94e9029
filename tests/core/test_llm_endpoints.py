"""Issue 12 (many endpoints): calls spread by load, per-endpoint concurrency, a dying endpoint taken out
with nothing lost and nothing repeated, and a cache keyed on the model, not the URL."""

from __future__ import annotations

import threading
import time

import pytest

from synalign_kedro.core.llm_cache import LLMCallCache
from synalign_kedro.core.llm_client import LLMClient, LLMSettings, LLMUnavailableError, cache_identity
from synalign_kedro.core.llm_server import resolve_endpoint, resolve_endpoints

from .scripted_server import ScriptedLLMServer
from .test_llm_client import sample_task


def settings_for(servers, tmp_path, concurrency=(2, 2), **overrides) -> LLMSettings:
    return LLMSettings.model_validate(
        {
            "model": "scripted",
            "endpoints": [
                {"base_url": s.url, "max_concurrency": c} for s, c in zip(servers, concurrency, strict=True)
            ],
            "structured_output": "json_object",
            "timeout": 5.0,
            "max_retries": 0,
            "transport_retries": 6,
            "transport_budget_s": 30,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.05,
            "cache_dir": str(tmp_path / "cache"),
            "show_progress": False,
            **overrides,
        }
    )


def client_for(settings: LLMSettings, tmp_path) -> tuple[LLMClient, LLMCallCache]:
    llm = settings.model_dump()
    cache = LLMCallCache(tmp_path / "cache" / "llm_calls.sqlite")
    return LLMClient(settings, cache_identity(settings), lambda: resolve_endpoint(llm), cache), cache


def answered_tasks(*servers) -> list[str]:
    """The task id of every request that got an answer, over all servers."""
    return [
        body["messages"][0]["content"].split(" for ")[1].split(".")[0]
        for server in servers
        for body in server.answered
    ]


def test_calls_spread_by_load_within_each_endpoints_concurrency(tmp_path):
    with ScriptedLLMServer(delay=0.15) as fast_a, ScriptedLLMServer(delay=0.15) as b:
        settings = settings_for([fast_a, b], tmp_path, concurrency=(3, 1))
        client, cache = client_for(settings, tmp_path)
        tasks = [sample_task(f"t{i}", offset=i) for i in range(12)]
        results, usage = client.run(tasks)
    assert all(r.ok for r in results) and usage.calls == 12 and len(cache) == 12
    assert fast_a.max_in_flight <= 3 and b.max_in_flight <= 1
    assert fast_a.max_in_flight == 3  # its slots were used together
    # 3 slots against 1 at equal speed: about three quarters of the calls go to the first endpoint
    assert len(fast_a.calls) >= 7 and len(b.calls) >= 1 and len(fast_a.calls) + len(b.calls) == 12
    assert sorted(answered_tasks(fast_a, b)) == sorted(t.task_id for t in tasks)
    report = {r["base_url"]: r for r in client.endpoints_report}
    assert report[fast_a.url]["calls"] == len(fast_a.calls) and report[b.url]["healthy"]


def test_an_endpoint_that_dies_mid_run_loses_nothing_and_repeats_nothing(tmp_path):
    with ScriptedLLMServer(delay=0.2) as dying, ScriptedLLMServer(delay=0.2) as survivor:
        settings = settings_for([dying, survivor], tmp_path)
        client, cache = client_for(settings, tmp_path)
        tasks = [sample_task(f"t{i}", offset=i) for i in range(16)]

        def kill_after_three_calls():
            while dying.n_calls < 3:
                time.sleep(0.01)
            dying.kill()  # its requests in flight lose their connection, new ones are refused

        killer = threading.Thread(target=kill_after_three_calls)
        killer.start()
        results, usage = client.run(tasks)
        killer.join()
    assert all(r.ok for r in results) and [r.task_id for r in results] == [t.task_id for t in tasks]
    answered = answered_tasks(dying, survivor)
    assert sorted(answered) == sorted(t.task_id for t in tasks)  # each task answered exactly once
    assert len(cache) == 16 and usage.calls == 16 and usage.transport_retries >= 1
    report = {r["base_url"]: r for r in client.endpoints_report}
    assert report[dying.url]["healthy"] is False and report[survivor.url]["healthy"] is True

    # resumed against other endpoints (another URL, same model): every finished call replays
    with ScriptedLLMServer() as elsewhere:
        moved = settings_for([elsewhere], tmp_path, concurrency=(4,))
        assert cache_identity(moved) == cache_identity(settings)
        client2, _ = client_for(moved, tmp_path)
        again, usage2 = client2.run(tasks)
    assert [r.value for r in again] == [r.value for r in results]
    assert usage2.calls == 0 and usage2.cache_hits == 16 and elsewhere.n_calls == 0


def test_when_every_endpoint_is_down_the_run_stops_with_a_clear_message(tmp_path):
    with ScriptedLLMServer(default="500") as a, ScriptedLLMServer(default="500") as b:
        settings = settings_for([a, b], tmp_path, transport_retries=8, endpoint_max_failures=2)
        client, cache = client_for(settings, tmp_path)
        with pytest.raises(LLMUnavailableError, match="kept failing|taken out") as error:
            client.run([sample_task("t0")])
    assert "re-run to resume" in str(error.value) and len(cache) == 0
    report = {r["base_url"]: r["healthy"] for r in client.endpoints_report}
    assert sorted(report.values()) == [False, True]  # the last one is never taken out: the budget decides


def test_single_base_url_and_endpoints_list_resolve_alike(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    single = {"model": "m", "base_url": "http://a:1/v1/", "max_concurrency": 3}
    [endpoint] = resolve_endpoints(single)
    assert endpoint.base_url == "http://a:1/v1" and endpoint.identity == "remote:http://a:1/v1#m"
    several = {
        "model": "m",
        "max_concurrency": 2,
        "endpoints": [{"base_url": "http://a:1/v1"}, {"base_url": "http://b:2/v1", "max_concurrency": 8}],
    }
    a, b = resolve_endpoints(several)
    assert (a.max_concurrency, b.max_concurrency) == (2, 8)
    assert a.identity == b.identity == cache_identity(several) == "remote:m"
    # an embedded model served by remote llama-servers shares the embedded runs' cache
    assert cache_identity({**several, "model": "smollm2-135m-instruct"}) == cache_identity(
        {"model": "smollm2-135m-instruct"}
    )
    with pytest.raises(ValueError, match="either llm.base_url"):
        LLMSettings.model_validate({**several, "base_url": "http://c/v1"})

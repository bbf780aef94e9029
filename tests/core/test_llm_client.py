"""LLM client against a scripted HTTP server: re-asks, transport retries, give-up budget, cache, secrets."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from dataclasses import replace

import pytest

from synalign_kedro.core.json_extract import JSONExtractionError, extract_json
from synalign_kedro.core.llm_cache import LLMCallCache
from synalign_kedro.core.llm_client import (
    ChatTask,
    LLMClient,
    LLMSettings,
    LLMUnavailableError,
    cache_identity,
)
from synalign_kedro.core.llm_server import Endpoint, remote_endpoint

from .scripted_server import ScriptedLLMServer

SECRET = "sk-test-SECRET-do-not-log-1234"


def sample_task(task_id: str, n: int = 3, offset: int = 0) -> ChatTask:
    schema = {
        "type": "object",
        "properties": {
            "samples": {"type": "array", "items": {"type": "string"}, "minItems": n, "maxItems": n}
        },
        "required": ["samples"],
    }

    def validate(parsed):
        samples = parsed["samples"] if isinstance(parsed, dict) else None
        if not isinstance(samples, list) or len(samples) < n:
            raise ValueError(f"need {n} samples")
        return samples[:n]

    return ChatTask(
        task_id,
        [
            {
                "role": "user",
                "content": f'Write exactly {n} texts for {task_id}. Answer as {{"samples": [...]}}',
            }
        ],
        "samples",
        schema,
        validate,
        offset,
    )


def make_client(server, tmp_path, factory_calls=None, **overrides):
    settings = LLMSettings.model_validate(
        {
            "model": "scripted",
            "base_url": server.url if server else "http://127.0.0.1:9/v1",
            "structured_output": "json_object",
            "timeout": 2.0,
            "max_retries": 2,
            "transport_retries": 4,
            "transport_budget_s": 20,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.05,
            "cache_dir": str(tmp_path / "cache"),
            "show_progress": False,
            **overrides,
        }
    )
    url = settings.base_url

    def factory():
        if factory_calls is not None:
            factory_calls.append(1)
        return Endpoint(base_url=url, model="scripted", identity=cache_identity(settings), api_key=SECRET)

    cache = LLMCallCache(tmp_path / "cache" / "llm_calls.sqlite")
    return LLMClient(settings, cache_identity(settings), factory, cache), cache


@pytest.fixture
def server():
    with ScriptedLLMServer() as s:
        yield s


def test_malformed_answers_are_reasked_with_the_validation_error(server, tmp_path):
    server.script = ["garbage", "truncated", "ok"]
    client, _ = make_client(server, tmp_path)
    [result], usage = client.run([sample_task("t0")])
    assert result.ok and len(result.value) == 3
    assert len(server.calls) == 3 and usage.calls == 3 and usage.reasks == 2
    # asked afresh: the request, then the error; the rejected answer is not shown (a small model copies it)
    original = server.calls[0]["messages"]
    first, second = server.calls[1]["messages"], server.calls[2]["messages"]
    assert [m["role"] for m in first] == [m["role"] for m in original] == ["user"]
    assert first[-1]["content"].startswith(original[-1]["content"]) and "no JSON" in first[-1]["content"]
    assert "cannot help" not in json.dumps(first)
    # a later re-ask carries only the latest error, not a pile of notes
    assert "truncated or malformed" in second[-1]["content"] and "no JSON" not in second[-1]["content"]
    assert second[-1]["content"].startswith(original[-1]["content"])
    assert len({call["seed"] for call in server.calls}) == 3  # each answer its own seed


def test_reask_shows_answer_continues_the_conversation(server, tmp_path):
    server.script = ["garbage", "ok"]
    client, _ = make_client(server, tmp_path, reask_shows_answer=True)
    [result], usage = client.run([sample_task("t0")])
    assert result.ok and usage.reasks == 1
    reask = server.calls[1]["messages"]
    assert reask[:-2] == server.calls[0]["messages"]
    assert reask[-2]["role"] == "assistant" and "cannot help" in reask[-2]["content"]
    assert reask[-1]["role"] == "user" and "no JSON" in reask[-1]["content"]


@pytest.mark.parametrize("bad", ["empty", "few", "garbage", "truncated"])
def test_failure_after_max_retries_is_recorded_and_the_run_goes_on(server, tmp_path, bad):
    server.script = [bad, bad, bad]  # task 0 exhausts 1 + max_retries answers; task 1 gets "ok"
    client, _ = make_client(server, tmp_path)
    results, usage = client.run([sample_task("t0"), sample_task("t1")])
    assert [r.ok for r in results] == [False, True]
    assert len(results[0].raw_responses) == 3 and results[0].error
    assert usage.failures == 1 and usage.reasks == 2 and len(server.calls) == 4


def test_429_500_and_stalls_are_retried_with_backoff(server, tmp_path):
    server.script = ["429", "500", "stall", "close", "ok"]
    server.stall_seconds = 4.0  # > the client's 2 s timeout
    client, _ = make_client(server, tmp_path, transport_retries=6)
    [result], usage = client.run([sample_task("t0")])
    assert result.ok
    assert len(server.calls) == 5 and usage.transport_retries == 4 and usage.calls == 1 and usage.reasks == 0


def test_a_server_that_stays_down_ends_the_run_within_budget_keeping_finished_calls(server, tmp_path):
    server.script = ["ok"]
    server.default = "500"
    client, cache = make_client(server, tmp_path, transport_retries=3)
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="re-run to resume") as error:
        client.run([sample_task("t0"), sample_task("t1"), sample_task("t2")])
    assert time.monotonic() - started < 10
    assert "500" in str(error.value) and SECRET not in str(error.value)
    assert len(server.calls) == 1 + 3  # one ok, then 3 attempts for t1, t2 never sent
    assert len(cache) == 1
    # the server comes back: the re-run replays t0 from the cache and only calls for t1 and t2
    server.default = "ok"
    client2, _ = make_client(server, tmp_path)
    results, usage = client2.run([sample_task("t0"), sample_task("t1"), sample_task("t2")])
    assert all(r.ok for r in results) and usage.cache_hits == 1 and usage.calls == 2


def test_unreachable_endpoint_gives_a_clear_error(tmp_path):
    client, _ = make_client(None, tmp_path, transport_retries=2)
    with pytest.raises(LLMUnavailableError, match="kept failing"):
        client.run([sample_task("t0")])


def test_cached_calls_are_not_repeated_and_no_endpoint_is_resolved(server, tmp_path):
    server.script = ["garbage"]  # the first task needs a re-ask: both answers are cached
    factory_calls: list = []
    client, cache = make_client(server, tmp_path, factory_calls)
    tasks = [sample_task(f"t{i}", offset=i) for i in range(4)]
    first, _ = client.run(tasks)
    assert len(server.calls) == 5 and len(cache) == 5 and factory_calls == [1]
    client2, _ = make_client(server, tmp_path, factory_calls)
    second, usage = client2.run(tasks)
    assert len(server.calls) == 5 and factory_calls == [1]  # no call, no server start
    assert usage.cache_hits == 5 and usage.calls == 0 and usage.reasks == 1
    assert [r.value for r in first] == [r.value for r in second]


def test_identical_prompts_with_distinct_seed_offsets_are_distinct_calls(server, tmp_path):
    client, _ = make_client(server, tmp_path)
    same = [sample_task("same", offset=0), sample_task("same", offset=1)]
    client.run(same)
    assert len(server.calls) == 2 and {c["seed"] for c in server.calls} == {42, 43}


def test_concurrent_requests_keep_task_order(server, tmp_path):
    server.delay = 0.1
    client, _ = make_client(server, tmp_path, max_concurrency=4)
    tasks = [sample_task(f"t{i}") for i in range(8)]
    results, usage = client.run(tasks)
    assert [r.task_id for r in results] == [t.task_id for t in tasks]
    assert all(r.ok for r in results) and usage.calls == 8 and len(server.calls) == 8
    assert all(f"t{i}" in json.dumps(server.calls) for i in range(8))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("json_object", "json_object"), ("json_schema", "json_schema"), ("plain", None)],
)
def test_structured_output_modes(server, tmp_path, mode, expected):
    client, _ = make_client(server, tmp_path, structured_output=mode)
    [result], _ = client.run([sample_task("t0")])
    assert result.ok
    response_format = server.calls[0].get("response_format")
    assert (response_format or {}).get("type") == expected
    if expected == "json_object":
        assert response_format["schema"]["properties"]["samples"]["minItems"] == 3
    if expected == "json_schema":
        assert response_format["json_schema"]["schema"]["required"] == ["samples"]


def test_auto_mode_is_json_object_for_embedded_and_json_schema_for_remote():
    assert LLMSettings(model="m").resolved_structured_output() == "json_object"
    assert (
        LLMSettings(model="m", base_url="https://api.openai.com/v1").resolved_structured_output()
        == "json_schema"
    )


def test_unknown_llm_settings_are_rejected():
    with pytest.raises(ValueError, match="max_tokenz"):
        LLMSettings.model_validate({"model": "m", "max_tokenz": 3})


def test_api_key_never_reaches_logs_or_cache(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server.script = ["500", "garbage"]
    client, cache = make_client(server, tmp_path)
    client.run([sample_task("t0")])
    cache.close()
    assert SECRET not in caplog.text
    assert SECRET.encode() not in (tmp_path / "cache" / "llm_calls.sqlite").read_bytes()
    assert SECRET not in repr(client._endpoint)
    assert server.calls  # the key did reach the server (as the bearer token), nowhere else


def test_cache_identity_matches_the_endpoint_identity(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = {"model": "gpt-4o-mini", "base_url": "https://api.openai.com/v1/"}
    assert cache_identity(llm) == remote_endpoint(llm["base_url"], llm["model"]).identity
    assert cache_identity({"model": "smollm2-135m-instruct"}).startswith(
        "embedded:SmolLM2-135M-Instruct.Q4_1.gguf@"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Sure!\n```json\n{"samples": ["x", "y"]}\n```\nHope it helps', {"samples": ["x", "y"]}),
        ('Here: ["a", "b"] done', ["a", "b"]),
        ('{"samples": ["line\nbreak"]}', {"samples": ["line\nbreak"]}),
    ],
)
def test_extract_json_finds_the_json(text, expected):
    assert extract_json(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"), [("", "empty"), ("no json here", "no JSON"), ('{"samples": ["a", "b', "truncated")]
)
def test_extract_json_explains_failures(text, reason):
    with pytest.raises(JSONExtractionError, match=reason):
        extract_json(text)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_logs_kept_samples_tokens_per_second_and_eta_when_not_a_terminal(
    server, tmp_path, caplog, monkeypatch
):
    """Piped output (kedro run > log): plain log lines, no carriage returns, with the same numbers as the bar."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    caplog.set_level(logging.INFO, logger="synalign_kedro.core.llm_client")
    server.script = ["garbage"] * 3  # the first task fails after its 2 re-asks: 4 of 5 tasks keep 2 samples
    client, _ = make_client(server, tmp_path, show_progress=True)
    tasks = [sample_task(f"t{i}", n=2, offset=i) for i in range(5)]
    client.run(tasks, description="synalign:stage2")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("synalign:stage2:")]
    assert len(lines) >= 2  # the start, every 10 % step
    assert "0/5 calls" in lines[0] and "kept 0/10 samples" in lines[0] and "ETA ?" in lines[0]
    assert "5/5 calls (100%)" in lines[-1] and "kept 8/10 samples" in lines[-1] and "1 failed" in lines[-1]
    assert " tok/s" in lines[-1] and "ETA 00:00" in lines[-1]
    assert re.search(r"kept \d+/10 samples, [\d.]+ tok/s, .*ETA \d\d:\d\d", lines[len(lines) // 2])
    assert "\r" not in sys.stderr.getvalue()
    # a re-run replays everything: one line, the cached tasks counted
    caplog.clear()
    client2, _ = make_client(server, tmp_path, show_progress=True)
    client2.run(tasks, description="synalign:stage2")
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("synalign:stage2:")]
    assert "kept 8/10 samples" in line and "5 cached" in line


def test_progress_bar_on_a_terminal_shows_kept_samples_tokens_per_second_and_eta(
    server, tmp_path, monkeypatch
):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    client, _ = make_client(server, tmp_path, show_progress=True)
    tasks = [sample_task(f"t{i}", n=2, offset=i) for i in range(4)] + [
        replace(sample_task("t4", n=2, offset=4), items=5)  # an explicit count beats the schema's
    ]
    client.run(tasks, description="attrprompt:samples")
    last = terminal.getvalue().split("\r")[-1]
    assert last.startswith("attrprompt:samples: 100%") and "5/5 calls" in last
    assert "kept 10/13 samples" in last and " tok/s" in last and "ETA 00:00" in last


def test_progress_counts_answers_when_the_schema_asks_no_list(server, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger="synalign_kedro.core.llm_client")
    schema = {"type": "object", "properties": {"tone": {"type": "string"}}, "required": ["tone"]}
    tasks = [
        ChatTask(f"s{i}", [{"role": "user", "content": f"s{i}"}], "summary", schema, dict, i)
        for i in range(3)
    ]
    client, _ = make_client(server, tmp_path, show_progress=True)
    client.run(tasks, description="synalign:stage1")
    assert "kept 3/3 answers" in caplog.records[-1].getMessage()


def _then_next(seen: list):
    """A ``then`` that gives each first task one follow-up ``<id>-next`` and records what it was called with."""

    def then(index, result, usage):
        seen.append((index, result.task_id, usage.calls))
        return [] if result.task_id.endswith("-next") else [sample_task(f"{result.task_id}-next")]

    return then


def test_follow_ups_join_the_run_as_soon_as_their_task_is_answered(tmp_path):
    # "slow" stalls 2 s; with 2 slots, "fast"'s follow-up is sent and answered meanwhile (no stage barrier)
    def route(body):
        return "stall" if "texts for slow." in body["messages"][-1]["content"] else None

    with ScriptedLLMServer(route=route, stall_seconds=2.0) as server:
        client, cache = make_client(server, tmp_path, max_concurrency=2, timeout=30.0)
        seen: list = []
        results, usage = client.run([sample_task("slow"), sample_task("fast")], then=_then_next(seen))
        answered = [re.search(r"texts for ([\w-]+)\.", b["messages"][-1]["content"]).group(1) for b in server.answered]
        # a re-run (same endpoint: the cache identity) replays every answer, follow-ups included, and asks nothing
        client2, _ = make_client(server, tmp_path, max_concurrency=2, timeout=30.0)
        again, usage2 = client2.run([sample_task("slow"), sample_task("fast")], then=_then_next([]))
        assert len(server.calls) == 4
    assert [r.task_id for r in results] == ["slow", "fast", "fast-next", "slow-next"]  # tasks, then added order
    assert all(r.ok for r in results) and usage.calls == 4 and len(cache) == 4
    assert answered.index("fast-next") < answered.index("slow")
    # then() gets each task's index and its own usage (one call each), follow-ups included
    assert [(i, task_id) for i, task_id, _ in seen] == [(1, "fast"), (2, "fast-next"), (0, "slow"), (3, "slow-next")]
    assert all(calls == 1 for *_, calls in seen)
    assert [r.task_id for r in again] == ["slow", "fast", "slow-next", "fast-next"]
    assert usage2.calls == 0 and usage2.cache_hits == 4
    assert {r.task_id: r.value for r in again} == {r.task_id: r.value for r in results}


def test_follow_ups_one_request_at_a_time_come_after_every_first_task(server, tmp_path):
    client, _ = make_client(server, tmp_path)  # max_concurrency 1
    results, _ = client.run([sample_task(f"t{i}", offset=i) for i in range(3)], then=_then_next([]))
    asked = [re.search(r"texts for ([\w-]+)\.", b["messages"][-1]["content"]).group(1) for b in server.calls]
    assert asked == ["t0", "t1", "t2", "t0-next", "t1-next", "t2-next"]  # the order of two separate runs
    assert [r.task_id for r in results] == asked

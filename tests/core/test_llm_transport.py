"""Issue 11 (items 1 and 4): every HTTP answer is checked, the cache keeps only what is worth replaying.

Transport-level garbage (HTTP 200 with ``{"choices": []}``, a text/plain body, a JSON content type with a
non-JSON body, JSON that is not a chat completion) is a transport error: retried, never cached, and past
the budget a message naming the endpoint, the status and the first bytes of the body. Answers that fail
validation are stored as failed, and ``retry_failed: true`` asks for them again.
"""

from __future__ import annotations

import sqlite3

import pytest

from synalign_kedro.core import llm_cache
from synalign_kedro.core.llm_cache import LLMCallCache
from synalign_kedro.core.llm_client import LLMUnavailableError

from .scripted_server import ScriptedLLMServer
from .test_llm_client import make_client, sample_task

GARBAGE = {
    # action: what the error message must quote from the body
    "nochoices": '{"choices": []}',
    "plaintext": "Internal proxy page",
    "badjson": "<html><body>Bad gateway",
    "notopenai": '{"result": "hello"',
}


@pytest.fixture
def server():
    with ScriptedLLMServer() as s:
        yield s


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_garbage_answer_is_retried_and_never_cached(server, tmp_path, garbage):
    server.script = [garbage, "ok"]
    client, cache = make_client(server, tmp_path)
    [result], usage = client.run([sample_task("t0")])
    assert result.ok and len(result.value) == 3
    assert len(server.calls) == 2 and usage.transport_retries == 1 and usage.calls == 1 and usage.reasks == 0
    assert len(cache) == 1 and cache.stats()["valid"] == 1
    # the re-run replays the good answer only
    client2, _ = make_client(server, tmp_path)
    [again], usage2 = client2.run([sample_task("t0")])
    assert again.value == result.value and usage2.calls == 0 and len(server.calls) == 2


def test_the_prompt_tokens_a_server_took_from_its_cache_are_counted(server, tmp_path):
    """usage.prompt_tokens_details.cached_tokens (llama-server, vLLM, OpenAI): counted for network calls only,
    0 where the server does not say (llama-cpp-python's server)."""
    client, _ = make_client(server, tmp_path)
    _, usage = client.run([sample_task("t0")])
    assert usage.prompt_tokens == 10 and usage.server_cached_prompt_tokens == 0
    server.cached_prompt_tokens = 6
    _, usage = client.run([sample_task("t1"), sample_task("t2")])
    assert usage.prompt_tokens == 20 and usage.server_cached_prompt_tokens == 12
    assert usage.as_dict()["server_cached_prompt_tokens"] == 12
    # replayed from the call cache: no server, nothing counted
    client2, _ = make_client(server, tmp_path)
    _, usage = client2.run([sample_task("t1")])
    assert usage.cache_hits == 1 and usage.server_cached_prompt_tokens == 0


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_persistent_garbage_names_endpoint_status_and_body(server, tmp_path, garbage):
    server.default = garbage
    client, cache = make_client(server, tmp_path, transport_retries=3)
    with pytest.raises(LLMUnavailableError) as error:
        client.run([sample_task("t0")])
    message = str(error.value)
    assert server.url in message and "HTTP 200" in message and "not an OpenAI chat completion" in message
    assert GARBAGE[garbage] in message and "re-run to resume" in message
    assert len(server.calls) == 3 and len(cache) == 0


def test_empty_choices_are_not_replayed_after_the_server_is_fixed(server, tmp_path):
    """The defect of issue 11: `{"choices": []}` was cached as an empty answer and replayed for ever."""
    server.default = "nochoices"
    client, cache = make_client(server, tmp_path, transport_retries=2)
    with pytest.raises(LLMUnavailableError):
        client.run([sample_task("t0"), sample_task("t1")])
    assert len(cache) == 0
    server.default = "ok"  # fixed
    client2, _ = make_client(server, tmp_path)
    results, usage = client2.run([sample_task("t0"), sample_task("t1")])
    assert all(r.ok for r in results) and usage.cache_hits == 0 and usage.calls == 2


def test_failed_answers_are_stored_as_failed_and_retried_on_request(server, tmp_path):
    server.script = ["garbage", "few"]  # t0: both answers fail validation (max_retries=1); t1 ok
    client, cache = make_client(server, tmp_path, max_retries=1)
    results, _ = client.run([sample_task("t0"), sample_task("t1", offset=1)])
    assert [r.ok for r in results] == [False, True]
    assert cache.stats() == {"calls": 3, "valid": 1, "failed": 2, "unknown": 0}

    # a plain re-run replays everything, the failure included: deterministic, no call
    replay, _ = make_client(server, tmp_path, max_retries=1)
    results, usage = replay.run([sample_task("t0"), sample_task("t1", offset=1)])
    assert [r.ok for r in results] == [False, True] and usage.calls == 0 and len(server.calls) == 3

    # retry_failed: only the failed task is asked again, with a new seed, and its answer replaces the failed one
    retry, _ = make_client(server, tmp_path, max_retries=1, retry_failed=True)
    results, usage = retry.run([sample_task("t0"), sample_task("t1", offset=1)])
    assert [r.ok for r in results] == [True, True]
    assert usage.calls == 1 and usage.refreshed == 1 and usage.cache_hits == 1
    assert len(server.calls) == 4 and server.calls[-1]["seed"] == 42 + retry.REFRESH_SEED_STRIDE
    assert cache.stats()["failed"] == 1  # the failed re-ask of the old answer stays, unused

    # and later plain runs replay the new answer
    final, _ = make_client(server, tmp_path, max_retries=1)
    results, usage = final.run([sample_task("t0"), sample_task("t1", offset=1)])
    assert [r.ok for r in results] == [True, True] and usage.calls == 0 and len(server.calls) == 4


def test_a_cache_file_from_before_validity_was_recorded_still_replays(tmp_path):
    path = tmp_path / "llm_calls.sqlite"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE calls (key TEXT PRIMARY KEY, identity TEXT, request TEXT, response TEXT, "
            "prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL, created REAL)"
        )
        old.execute("INSERT INTO calls VALUES ('k', 'id', '{}', 'answer', 3, 4, 0.5, 0)")
    cache = LLMCallCache(path)
    call = cache.get("k")
    assert call.text == "answer" and call.valid is None and call.attempts == 1
    cache.mark("k", False)
    assert cache.get("k").valid is False and cache.stats()["failed"] == 1
    cache.close()


def test_forget_failed_command(server, tmp_path, capsys):
    server.script = ["garbage", "garbage"]
    client, cache = make_client(server, tmp_path, max_retries=1)
    client.run([sample_task("t0"), sample_task("t1", offset=1)])
    cache.close()
    path = str(tmp_path / "cache" / "llm_calls.sqlite")
    assert llm_cache.main(["stats", path]) == 0
    assert '"failed": 2' in capsys.readouterr().out
    assert llm_cache.main(["forget-failed", path]) == 0
    assert "forgot 2 failed answers" in capsys.readouterr().out
    assert llm_cache.main(["stats", str(tmp_path / "nope.sqlite")]) == 2

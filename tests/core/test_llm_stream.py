"""Streamed answers (``llm.stop_failing_answers``): an answer certain to fail is stopped where that becomes
certain, re-asked, cached and salvaged like any other; against a scripted server that streams slowly."""

from __future__ import annotations

import json
import time

import pytest

from synalign_kedro.core.generation.answers import sample_stop_check, sample_validator, samples_json_schema
from synalign_kedro.core.generation.context import SampleCall, pool_rows
from synalign_kedro.core.json_extract import complete_items
from synalign_kedro.core.llm_cache import LLMCallCache
from synalign_kedro.core.llm_client import (
    ChatTask,
    LLMClient,
    LLMSettings,
    LLMUnavailableError,
    TaskResult,
    cache_identity,
)
from synalign_kedro.core.llm_server import Endpoint

from .scripted_server import ScriptedLLMServer, _loop_answer, valid_answer


def samples_task(task_id: str, n: int = 3) -> ChatTask:
    validate, _ = sample_validator(n, 1)
    prompt = [{"role": "user", "content": f'Write exactly {n} texts for {task_id}. Answer as {{"samples": [...]}}'}]
    return ChatTask(task_id, prompt, "samples", samples_json_schema(n), validate, stop_check=sample_stop_check(n, 1))


def streaming_client(server: ScriptedLLMServer, tmp_path, kind: str = "llama_server", **overrides):
    settings = LLMSettings.model_validate(
        {
            "model": "scripted",
            "base_url": server.url,
            "structured_output": "json_object",
            "timeout": 10.0,
            "max_retries": 1,
            "transport_retries": 3,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.05,
            "cache_dir": str(tmp_path / "cache"),
            "show_progress": False,
            **overrides,
        }
    )
    identity = cache_identity(settings)
    cache = LLMCallCache(tmp_path / "cache" / "llm_calls.sqlite")
    endpoint = Endpoint(base_url=server.url, model="scripted", identity=identity, server=kind)
    return LLMClient(settings, identity, lambda: endpoint, cache), cache


@pytest.fixture
def server():
    with ScriptedLLMServer() as s:
        s.stream_delay = 0.01  # a looping answer takes 1.5 s: the client leaves it long before its end
        yield s


def test_an_answer_that_repeats_a_sample_is_stopped_there_and_reasked(server, tmp_path):
    server.script = ["loop", "ok"]
    client, cache = streaming_client(server, tmp_path)
    [result], usage = client.run([samples_task("t0")])

    assert result.ok and len(result.value) == 3
    assert [call.get("stream") for call in server.calls] == [True, True]
    assert server.calls[0]["timings_per_token"] is True  # llama-server: exact token counts in every event
    # the loop was left at its second sample: the server wrote well under its events
    loop = _loop_answer({"response_format": {"schema": samples_json_schema(3)}})
    read = next(i + 1 for i in range(len(loop)) if sample_stop_check(3, 1)(loop[: 4 * (i + 1)]))
    assert read < len(loop) / 4 * 0.75 and server.stream_events[0] < len(loop) / 4 and server.stream_left == 1
    assert usage.stopped == 1 and usage.reasks == 1
    stopped = result.raw_responses[0]
    assert len(complete_items(stopped)) == 2 and not stopped.rstrip().endswith("]}")
    # the re-ask names the certain rejection, not "truncated JSON"
    assert "sample 2 repeats another sample; 3 distinct samples are needed" in server.calls[1]["messages"][-1]["content"]
    # the stopped answer's tokens: the server's own count in the last event read (its timings), the prompt's too
    assert usage.completion_tokens == read + server.stream_events[1]
    assert usage.prompt_tokens == 10 + 10

    # a resumed run replays both answers, the stopped one with the same rejection, without the network
    replay, _ = streaming_client(server, tmp_path)
    [again], replay_usage = replay.run([samples_task("t0")])
    assert again.ok and again.value == result.value and replay_usage.cache_hits == 2 and len(server.calls) == 2
    cache.close()


def test_stopped_answer_token_counts_come_from_the_last_event_timings(server, tmp_path):
    server.script = ["loop", "loop"]
    client, _ = streaming_client(server, tmp_path)
    [result], usage = client.run([samples_task("t0")])
    assert not result.ok and "repeats another sample" in result.error
    assert usage.stopped == 2 and usage.failures == 1
    # predicted_n of the last event the client read, per answer; prompt: cache_n + prompt_n = 10
    loop = _loop_answer({"response_format": {"schema": samples_json_schema(3)}})
    read = next(i + 1 for i in range(len(loop)) if sample_stop_check(3, 1)(loop[: 4 * (i + 1)]))
    assert usage.prompt_tokens == 20 and usage.completion_tokens == 2 * read


def test_a_stream_is_read_whole_when_nothing_fails(server, tmp_path):
    client, _ = streaming_client(server, tmp_path)
    [result], usage = client.run([samples_task("t0")])
    assert result.ok and usage.stopped == 0 and usage.reasks == 0
    assert usage.completion_tokens == server.stream_events[0]  # the final usage event's count
    assert result.raw_responses[0] == json.dumps({"samples": result.value})


@pytest.mark.parametrize(
    ("kind", "setting", "streams"),
    [
        ("llama_server", "auto", True),
        ("", "auto", False),  # a remote endpoint: only when asked
        ("llama_cpp_python", "auto", False),
        ("", True, True),
        ("llama_server", False, False),
    ],
)
def test_which_endpoints_stream(server, tmp_path, kind, setting, streams):
    server.script = ["loop", "ok"]
    client, _ = streaming_client(server, tmp_path, kind=kind, stop_failing_answers=setting)
    [result], usage = client.run([samples_task("t0")])
    assert result.ok
    assert bool(server.calls[0].get("stream")) is streams and usage.stopped == int(streams)
    assert ("timings_per_token" in server.calls[0]) is (streams and kind == "llama_server")
    if not streams:  # the whole loop was read, then rejected for the same reason
        assert "sample 2 repeats another sample" in server.calls[1]["messages"][-1]["content"]


def test_plain_mode_is_not_streamed(server, tmp_path):
    """Without a schema the server's grammar does not cap the samples, so no partial answer is certain to fail."""
    client, _ = streaming_client(server, tmp_path, structured_output="plain")
    [result], _ = client.run([samples_task("t0")])
    assert result.ok and "stream" not in server.calls[0]


def test_an_event_that_is_not_json_is_a_transport_error_and_retried(server, tmp_path):
    server.script = ["badstream", "ok"]
    client, cache = streaming_client(server, tmp_path)
    [result], usage = client.run([samples_task("t0")])
    assert result.ok and usage.transport_retries == 1 and usage.reasks == 0 and usage.calls == 1
    assert len(cache) == 1  # the broken stream was never cached


def test_a_stream_past_the_timeout_is_stopped(server, tmp_path):
    server.stream_delay = 0.1  # about 4 s for the answer's 38 events, against a 1 s timeout for all of it
    client, _ = streaming_client(server, tmp_path, timeout=1.0, transport_retries=1, transport_budget_s=1)
    with pytest.raises(LLMUnavailableError, match="longer than llm.timeout=1 s"):
        client.run([samples_task("t0")])
    deadline = time.monotonic() + 10
    while not server.stream_events and time.monotonic() < deadline:  # the server notices the client left
        time.sleep(0.05)
    answer_events = len(valid_answer(server.calls[0])) / 4
    # about 10 events in the 1 s, a few more written before the server sees the client gone
    assert answer_events > 30 and server.stream_events[0] < answer_events - 8 and server.stream_left == 1


def test_complete_items_of_a_cut_off_answer():
    assert complete_items('{"samples": ["a", "b \\" c", "d') == ["a", 'b " c']
    assert complete_items('{"samples": ["a", {"text": "x"}, {"text": "y') == ["a", {"text": "x"}]
    assert complete_items('{"samples": ["a", "b"]}') == ["a", "b"]
    assert complete_items('{"samples": [') == [] and complete_items("no array") == []


def test_sample_stop_check_is_certain_only_of_rejections():
    check = sample_stop_check(4, 2, ["a copied demonstration"])
    assert check('{"samples": ["one good text", "two good text", "One good text!", "four') == (
        "sample 3 repeats another sample; 4 distinct samples are needed"
    )
    assert check('{"samples": ["A copied demonstration.", "') == "sample 1 copies an example verbatim; write new text"
    assert check('{"samples": ["one good text", "two good') == ""
    assert check('{"samples": ["one good text", "two good text", "three good text", "four good text"]}') == ""
    # the same message as the full validation gives the finished answer
    validate, _ = sample_validator(4, 2, ["a copied demonstration"])
    with pytest.raises(ValueError, match="sample 3 repeats another sample; 4 distinct samples are needed"):
        validate({"samples": ["one good text", "two good text", "one good text", "four good text"]})


def test_a_stopped_answer_is_salvaged_up_to_its_last_complete_sample():
    stopped = '{"samples": ["first usable text", "second usable text", "first usable text'
    salvage = sample_validator(3, 1)[1]
    call = SampleCall(samples_task("t0"), "pos", 0, "", [], salvage, 3)
    rows = pool_rows(TaskResult("t0", False, None, [stopped], "sample 3 repeats another sample"), call, "m", "x", True)
    assert [row["text"] for row in rows] == ["first usable text", "second usable text"]
    assert {row["raw_response"] for row in rows} == {stopped}

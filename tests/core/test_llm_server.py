"""The embedded llama.cpp server: real process, real chat completion through the openai client."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest
from openai import APITimeoutError, OpenAI

from synalign_kedro.core import llm_server

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


needs_llama_server = pytest.mark.skipif(
    llm_server.find_llama_server() is None, reason="no llama-server binary: `make llama-server` builds it"
)
BACKENDS = [pytest.param("llama_server", marks=needs_llama_server), "llama_cpp_python"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_server_answers_a_chat_completion_and_is_gone_afterwards(backend):
    endpoint = llm_server.embedded_endpoint("smollm2-135m-instruct", n_ctx=1024, backend=backend, parallel=2)
    server = next(iter(llm_server._SERVERS.values()))
    assert isinstance(server, llm_server.LlamaServer) == (backend == "llama_server")
    assert endpoint.max_concurrency == (2 if backend == "llama_server" else 1)
    pid, pgid = server.process.pid, os.getpgid(server.process.pid)
    assert pgid != os.getpgid(0), "the server must run in its own process group"
    assert endpoint.base_url.startswith("http://127.0.0.1:")
    assert endpoint.identity.startswith("embedded:SmolLM2-135M-Instruct.Q4_1.gguf@")

    client = OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0, timeout=60)
    reply = client.chat.completions.create(
        model=endpoint.model,
        messages=[{"role": "user", "content": "Say hello in one word."}],
        max_tokens=8,
        temperature=0,
        seed=1,
    )
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens > 0

    # a second request for the same model reuses the running server
    again = llm_server.embedded_endpoint("smollm2-135m-instruct", n_ctx=1024, backend=backend, parallel=2)
    assert again.base_url == endpoint.base_url

    llm_server.stop_all()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_api_key_never_in_repr():
    endpoint = llm_server.Endpoint("http://x/v1", "m", "remote:x#m", api_key="sk-secret-123")
    assert "sk-secret-123" not in repr(endpoint)


def test_failed_start_reports_the_log(tmp_path):
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"not a gguf file")
    server = llm_server.LlamaCppServer(bogus, "broken", startup_timeout=60)
    with pytest.raises(llm_server.LLMServerError, match="exited during start-up"):
        server.start()
    assert not server.running


@needs_llama_server
def test_llama_server_enforces_the_json_schema_and_drops_abandoned_requests():
    endpoint = llm_server.embedded_endpoint("smollm2-135m-instruct", n_ctx=1024, backend="llama_server", parallel=2)
    client = OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0, timeout=60)
    schema = {
        "type": "object",
        "properties": {"samples": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3}},
        "required": ["samples"],
    }
    for response_format in (
        {"type": "json_schema", "json_schema": {"name": "samples", "schema": schema}},
        {"type": "json_object", "schema": schema},  # what `structured_output: auto` sends to the embedded server
    ):
        reply = client.chat.completions.create(
            model=endpoint.model,
            messages=[{"role": "user", "content": "Write three words about cats as JSON."}],
            max_tokens=120,
            temperature=0,
            seed=1,
            response_format=response_format,
        )
        assert len(json.loads(reply.choices[0].message.content)["samples"]) == 3  # the grammar's minItems/maxItems

    # a client that gives up closes its connection: the server stops generating that answer
    impatient = OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0, timeout=1.0)
    with pytest.raises(APITimeoutError):
        impatient.chat.completions.create(
            model=endpoint.model,
            messages=[{"role": "user", "content": "Count from 1 to 5000, one number per line."}],
            max_tokens=4000,
            temperature=0,
            # without this the tiny model may end its answer by itself inside the second, and nothing is abandoned
            # (CI once saw exactly that: "DID NOT RAISE APITimeoutError")
            extra_body={"ignore_eos": True},
        )
    slots_url = endpoint.base_url.removesuffix("/v1") + "/slots"
    # unabandoned, 4000 tokens take minutes; cancelled, the slot is idle after its current decode step (seconds,
    # up to a minute when the 2 cores are shared with several other servers)
    deadline = time.monotonic() + 90
    busy = True
    while busy and time.monotonic() < deadline:
        with urllib.request.urlopen(slots_url, timeout=5) as response:
            busy = any(slot.get("is_processing") for slot in json.loads(response.read()))
        time.sleep(0.2)
    assert not busy, "the abandoned request is still being generated"
    # the pinned llama-server's log has the slot lines slot_occupancy reads: three requests, one at a time (and
    # the moments between them, when no slot is busy)
    (server,) = [s for s in llm_server.running_servers() if s.base_url == endpoint.base_url]
    occupancy = llm_server.slot_occupancy(server.log_path.read_text(errors="replace"))
    assert max(occupancy) == 1 and occupancy[1] > 1.0, occupancy
    llm_server.stop_all()


@needs_llama_server
def test_ngram_speculation_drafts_a_repeated_run_and_keeps_the_grammar():
    """``speculative: ngram-simple`` as resolve_endpoint passes it from ``llm.server``: an answer that repeats
    text of its context is drafted from it and the drafts are accepted; a schema-constrained answer still parses."""
    llm = {"model": "smollm2-135m-instruct", "max_concurrency": 2,
           "server": {"backend": "llama_server", "n_ctx": 1024, "speculative": "ngram-simple"}}  # fmt: skip
    endpoint = llm_server.resolve_endpoint(llm)
    (server,) = [s for s in llm_server.running_servers() if s.base_url == endpoint.base_url]
    assert server.command()[server.command().index("--spec-type") + 1] == "ngram-simple"
    line = "the quick brown fox jumps over the lazy dog and runs back home again. "
    body = {"prompt": line * 6, "n_predict": 96, "temperature": 0, "ignore_eos": True}
    request = urllib.request.Request(
        endpoint.base_url.removesuffix("/v1") + "/completion", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=120) as response:
        timings = json.loads(response.read())["timings"]
    assert timings.get("draft_n", 0) > 0 and timings.get("draft_n_accepted", 0) > 0, timings
    client = OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0, timeout=60)
    schema = {"type": "object", "properties": {"samples": {"type": "array", "items": {"type": "string"},
              "minItems": 3, "maxItems": 3}}, "required": ["samples"]}  # fmt: skip
    reply = client.chat.completions.create(
        model=endpoint.model,
        messages=[{"role": "user", "content": "Write the same word about cats three times as JSON."}],
        max_tokens=120, temperature=0, seed=1, response_format={"type": "json_object", "schema": schema},
    )  # fmt: skip
    assert len(json.loads(reply.choices[0].message.content)["samples"]) == 3
    llm_server.stop_all()


SLOT_LOG = """\
0.01.800.000 I slot launch_slot_: id  3 | task 1 | processing task, is_child = 0
0.01.900.000 I srv  update_slots: something else at the same time
0.05.800.000 I slot launch_slot_: id  2 | task 0 | processing task, is_child = 0
0.05.800.500 I slot launch_slot_: id  1 | task 3 | processing task, is_child = 0
0.22.300.000 I slot print_timing: id  1 | task 3 | prompt eval time =   11723.87 ms /   418 tokens
0.22.300.000 I slot      release: id  1 | task 3 | stop processing: n_tokens = 457, truncated = 0
1.02.300.000 I slot      release: id  3 | task 1 | stop processing: n_tokens = 412, truncated = 0
1.05.000.000 I slot launch_slot_: id  0 | task 9 | processing task, is_child = 0
1.10.000.000 I slot      release: id  0 | task 9 | stop processing: n_tokens = 40, truncated = 0
1.12.000.000 I slot      release: id  2 | task 0 | stop processing: n_tokens = 40, truncated = 0
"""


def test_slot_occupancy_counts_the_seconds_with_k_slots_busy():
    occupancy = llm_server.slot_occupancy(SLOT_LOG)
    # 1.8-5.8 one slot; 5.8-5.8005 two; 5.8005-22.3 three; 22.3-62.3 two; 62.3-65 one; 65-70 two; 70-72 one
    expected = {1: 4.0 + 2.7 + 2.0, 2: 0.0005 + 40.0 + 5.0, 3: 22.3 - 5.8005}
    assert occupancy == pytest.approx(expected, abs=1e-3)
    assert sum(occupancy.values()) == pytest.approx(72.0 - 1.8, abs=1e-3)  # first start to last end
    assert llm_server.slot_occupancy("no slot lines here") == {}


def test_backend_choice_and_a_missing_binary_is_explained(monkeypatch, tmp_path):
    with pytest.raises(llm_server.LLMServerError, match="does not exist or is not executable"):
        llm_server.resolve_backend("llama_server", tmp_path / "nope")
    monkeypatch.setattr(llm_server, "find_llama_server", lambda binary=None: None)
    with pytest.raises(llm_server.LLMServerError, match="make llama-server"):
        llm_server.resolve_backend("llama_server")
    assert llm_server.resolve_backend("auto") == ("llama_cpp_python", None)  # with a warning
    assert llm_server.resolve_backend("llama_cpp_python") == ("llama_cpp_python", None)
    with pytest.raises(llm_server.LLMServerError, match="must be one of"):
        llm_server.resolve_backend("vllm")


def test_llama_server_command_line(tmp_path):
    server = llm_server.LlamaServer(
        tmp_path / "m.gguf", "m", "/bin/llama-server", parallel=4, n_ctx=2048, n_threads=2, port=1234
    )
    command = server.command()
    flags = {
        flag: (value if not value.startswith("--") else None)
        for flag, value in zip(command[1:], [*command[2:], "--end"], strict=True)
        if flag.startswith("--")
    }
    assert command[0] == "/bin/llama-server" and "--cont-batching" in command
    assert flags["--parallel"] == "4" and flags["--ctx-size"] == str(4 * 2048)  # n_ctx is per slot
    assert flags["--threads"] == "2" and flags["--cache-reuse"] == "256" and flags["--poll"] == "0"
    assert "--spec-type" not in command  # speculative: none, the class default
    drafting = llm_server.LlamaServer(tmp_path / "m.gguf", "m", "/bin/llama-server", speculative="ngram-simple")
    assert drafting.command()[drafting.command().index("--spec-type") + 1] == "ngram-simple"


def test_a_server_that_segfaults_at_start_up_says_how_to_rebuild(tmp_path):
    """llama-server built with Intel AMX dies of SIGSEGV at its warm-up on some CPUs (seen here): the error
    names the signal and the rebuild, and an ordinary failed start does not."""
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    crashing = tmp_path / "llama-server"
    crashing.write_text("#!/bin/sh\necho 'llama threadpool init, n_threads = 2'\nkill -SEGV $$\n")
    crashing.chmod(0o755)
    server = llm_server.LlamaServer(model, "m", str(crashing), startup_timeout=30)
    with pytest.raises(llm_server.LLMServerError) as error:
        server.start()
    message = str(error.value)
    assert "exited during start-up (code -11): a segmentation fault" in message
    assert "rm .venv/bin/llama-server && make llama-server" in message and "threadpool init" in message
    exiting = tmp_path / "exits"
    exiting.write_text("#!/bin/sh\nexit 1\n")
    exiting.chmod(0o755)
    with pytest.raises(llm_server.LLMServerError, match=r"\(code 1\); last log lines") as error:
        llm_server.LlamaServer(model, "m", str(exiting), startup_timeout=30).start()
    assert "segmentation" not in str(error.value)

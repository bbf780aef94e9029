"""The embedded llama.cpp server: real process, real chat completion through the openai client."""

from __future__ import annotations

import os
import time

import pytest
from openai import OpenAI

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


def test_server_answers_a_chat_completion_and_is_gone_afterwards():
    endpoint = llm_server.embedded_endpoint("smollm2-135m-instruct", n_ctx=1024)
    server = next(iter(llm_server._SERVERS.values()))
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
    assert llm_server.embedded_endpoint("smollm2-135m-instruct", n_ctx=1024).base_url == endpoint.base_url

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

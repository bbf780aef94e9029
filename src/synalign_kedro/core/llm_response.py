"""The check every HTTP answer passes before the LLM client uses it: an OpenAI chat completion (whole, or
streamed as server-sent events), or :class:`MalformedResponseError` (transport-level garbage: retried within
the budget, never cached)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import openai


class ChatAnswer(NamedTuple):
    """What the client takes from a chat completion."""

    content: str
    prompt_tokens: int
    completion_tokens: int
    # prompt tokens the server took from its prompt (prefix) cache instead of evaluating them
    # (``usage.prompt_tokens_details.cached_tokens``: llama-server, vLLM with prefix caching, OpenAI; 0 where
    # the server does not say, e.g. llama-cpp-python's server)
    server_cached_prompt_tokens: int = 0
    # why a streamed answer was stopped before its end (the task's stop check: it is certain to fail); "" else
    stopped: str = ""


class MalformedResponseError(Exception):
    """An HTTP answer that is not an OpenAI chat completion (transport-level garbage; retried, never cached)."""

    def __init__(self, base_url: str, status: int, content_type: str, body: bytes, reason: str) -> None:
        self.base_url = base_url
        self.status_code_seen = status
        self.body_start = body[:200].decode("utf-8", errors="replace")
        super().__init__(
            f"{base_url} answered HTTP {status} ({content_type or 'no content type'}) with something that is not "
            f"an OpenAI chat completion: {reason}; the body starts with {self.body_start!r}"
        )


def parse_chat_completion(response: Any, base_url: str) -> ChatAnswer:
    """The :class:`ChatAnswer` of an HTTP answer, or :class:`MalformedResponseError`.

    ``response`` is the HTTP response under the ``openai`` client (``with_raw_response``): anything with
    ``status_code``, ``headers`` and ``content``.

    Checked here, not by the ``openai`` package: it returns a text/plain body as a ``str`` and raises a bare
    ``JSONDecodeError`` on a JSON content type with a non-JSON body, and accepts ``{"choices": []}``.
    """
    body = response.content
    content_type = response.headers.get("content-type", "")

    def malformed(reason: str) -> MalformedResponseError:
        return MalformedResponseError(base_url, response.status_code, content_type, body, reason)

    if "json" not in content_type.lower():
        raise malformed("the content type is not JSON")
    try:
        data = json.loads(body)
    except ValueError as error:
        raise malformed(f"the body is not JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise malformed("no `choices` list")
    if not data["choices"]:
        raise malformed("`choices` is empty")
    choice = data["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise malformed("`choices[0]` has no `message`")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise malformed("`choices[0].message.content` is not a string")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return ChatAnswer(
        content or "",
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        _server_cached_tokens(usage),
    )


def _server_cached_tokens(usage: dict) -> int:
    """``usage.prompt_tokens_details.cached_tokens``, 0 where the server does not say."""
    details = usage.get("prompt_tokens_details")
    return int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0


def read_chat_stream(
    response: Any,
    base_url: str,
    stop_check: Callable[[str], str] | None = None,
    deadline: float | None = None,
) -> ChatAnswer:
    """The :class:`ChatAnswer` of a streamed chat completion (``stream: true``), read event by event.

    ``stop_check(text so far) -> str`` is asked whenever the text may have completed an element of its JSON
    (after a ``"`` or ``}``); when it answers a rejection, the stream is closed there (the server sees the
    client leave and stops generating) and the answer is the text so far, with ``stopped`` set. ``deadline``
    (``time.monotonic()``) bounds the whole answer, not only the wait between events: past it the stream is
    closed and :class:`openai.APITimeoutError` raised.

    Token counts come from the final event's ``usage`` (``stream_options.include_usage``); a stopped answer has
    none, so they come from the last event's ``timings`` (llama-server with ``timings_per_token``: exact), else
    the content events received count as completion tokens and the prompt as 0 tokens. A body that is not an
    event stream is read as one chat completion (:func:`parse_chat_completion`); an event that is not JSON, not
    a chunk or an error event is a :class:`MalformedResponseError`; a stream cut off by the network is an
    :class:`openai.APIConnectionError` (both retried by the client).
    """
    content_type = response.headers.get("content-type", "")
    if "event-stream" not in content_type.lower():
        response.read()
        return parse_chat_completion(response, base_url)
    parts: list[str] = []
    events, stopped = 0, ""
    usage: dict = {}
    timings: dict = {}

    def malformed(payload: str, reason: str) -> MalformedResponseError:
        return MalformedResponseError(base_url, response.status_code, content_type, payload.encode(), reason)

    lines = response.iter_lines()
    try:
        while True:
            try:
                line = next(lines)
            except StopIteration:
                break
            except Exception as error:  # the HTTP library's (httpx's) own error: the connection broke mid-stream
                raise openai.APIConnectionError(request=response.request) from error
            if deadline is not None and time.monotonic() > deadline:
                raise openai.APITimeoutError(request=response.request)
            if not line.startswith("data:"):
                continue  # comments, event names, blank separators
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            try:
                data = json.loads(payload)
            except ValueError:
                raise malformed(payload, "a stream event is not JSON") from None
            if not isinstance(data, dict) or "error" in data or not isinstance(data.get("choices"), list):
                raise malformed(payload, "a stream event is an error or not a chat completion chunk")
            if isinstance(data.get("usage"), dict):
                usage = data["usage"]
            if isinstance(data.get("timings"), dict):
                timings = data["timings"]
            choice = data["choices"][0] if data["choices"] else {}
            piece = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
            if not piece:
                continue
            if not isinstance(piece, str):
                raise malformed(payload, "`delta.content` is not a string")
            parts.append(piece)
            events += 1
            if stop_check is not None and ('"' in piece or "}" in piece):
                stopped = stop_check("".join(parts))
                if stopped:
                    break
    finally:
        response.close()  # mid-stream: the connection closes, so the server stops generating
    timed_prompt = int(timings.get("cache_n") or 0) + int(timings.get("prompt_n") or 0)
    return ChatAnswer(
        "".join(parts),
        int(usage.get("prompt_tokens") or timed_prompt),
        int(usage.get("completion_tokens") or timings.get("predicted_n") or events),
        _server_cached_tokens(usage) or int(timings.get("cache_n") or 0),
        stopped,
    )

"""The check every HTTP answer passes before the LLM client uses it: an OpenAI chat completion, or
:class:`MalformedResponseError` (transport-level garbage: retried within the budget, never cached)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple


class ChatAnswer(NamedTuple):
    """What the client takes from a chat completion."""

    content: str
    prompt_tokens: int
    completion_tokens: int
    # prompt tokens the server took from its prompt (prefix) cache instead of evaluating them
    # (``usage.prompt_tokens_details.cached_tokens``: llama-server, vLLM with prefix caching, OpenAI; 0 where
    # the server does not say, e.g. llama-cpp-python's server)
    server_cached_prompt_tokens: int = 0


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
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    return ChatAnswer(
        content or "",
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(details.get("cached_tokens") or 0),
    )

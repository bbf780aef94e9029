"""Tolerant extraction of one JSON value from an LLM answer (the ``plain`` structured-output mode).

Hand-written on purpose: the only libraries that "repair" JSON guess at missing content, and a guessed
sample is worse than a re-ask. This module only *finds* JSON: it strips Markdown code fences and leading or
trailing chatter, then decodes the first complete JSON object or array with :meth:`json.JSONDecoder.raw_decode`.
"""

from __future__ import annotations

import json
import re

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


class JSONExtractionError(ValueError):
    """The text holds no complete JSON object or array."""


def extract_json(text: str | None):
    """Return the first complete JSON object or array found in ``text``.

    Tried in order: the whole text, the contents of each Markdown code fence, then every position where a
    ``{`` or ``[`` starts. Raises :class:`JSONExtractionError` with a short reason (empty answer, truncated
    JSON, no JSON at all) that is suitable for a re-ask message.
    """
    if text is None or not text.strip():
        raise JSONExtractionError("the answer was empty")
    stripped = text.strip()
    # strict=False: accept raw newlines/tabs inside strings (grammar-constrained llama.cpp output has them)
    decoder = json.JSONDecoder(strict=False)
    try:
        return decoder.decode(stripped)
    except json.JSONDecodeError:
        pass
    candidates = [m.group(1).strip() for m in _FENCE.finditer(stripped)] + [stripped]
    saw_start = False
    for candidate in candidates:
        for position, char in enumerate(candidate):
            if char not in "{[":
                continue
            saw_start = True
            try:
                value, _ = decoder.raw_decode(candidate, position)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict | list):
                return value
    if saw_start:
        raise JSONExtractionError("the answer holds no complete JSON value (truncated or malformed JSON)")
    raise JSONExtractionError("the answer holds no JSON object or array")


def complete_items(text: str | None) -> list:
    """The complete elements of the first JSON array in ``text``, even when the answer stops inside the array.

    For an answer cut off at ``max_tokens`` or stopped early (``{"samples": ["a", "b", "c…``): the elements
    before the cut, each decoded whole (``"a"``, ``"b"``); the unfinished one is dropped, not guessed. Meant for
    answers of a schema with one array (``{"samples": [...]}``): the first ``[`` of the text is taken as that
    array's start. Empty when the text has no ``[``.
    """
    if not text:
        return []
    start = text.find("[")
    if start < 0:
        return []
    decoder = json.JSONDecoder(strict=False)
    items, position, length = [], start + 1, len(text)
    while True:
        while position < length and text[position] in " \t\r\n,":
            position += 1
        if position >= length or text[position] == "]":
            return items
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:  # the element the text stops in
            return items
        if position >= length:  # a number or word cut short would decode too: only a delimiter ends an element
            return items if not isinstance(value, str | dict | list) else items + [value]
        items.append(value)

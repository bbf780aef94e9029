"""Answer schemas and their validation: what the LLM must return, checked before a sample enters a pool.

- the stage-1 attribute summary S = {(a_i, v_i)} (SynAlign eq. 6): one informative string per attribute;
- a samples answer ``{"samples": [...]}``: enough distinct, new, non-trivial texts (eq. 7 and the baselines);
- AttrPrompt's attribute values ``{"values": [...]}``.

A failed validation's message goes back to the model in a re-ask (:mod:`synalign_kedro.core.llm_client`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, create_model, field_validator

from ..json_extract import complete_items
from .config import GenerationConfigError


def duplicate_key(text: str) -> str:
    """The key under which two generated samples (or a sample and a demonstration) count as the same text:
    lower case, punctuation removed, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def distinct_rows(rows: list[dict]) -> list[dict]:
    """The pool rows whose text (by :func:`duplicate_key`) no earlier row has: the same text from two calls is
    kept once, the first time."""
    seen, kept = set(), []
    for row in rows:
        key = duplicate_key(row["text"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


# Small models copy the JSON format example instead of writing: such answers are rejected (re-ask).
_PLACEHOLDER = re.compile(
    r"^(?:\.\.\.|…|<[^<>]*>|(?:first|second|third|next|another)? ?(?:text|sample|review|item|value|example|string|news item)s? ?\d*)$",
    re.IGNORECASE,
)


def is_placeholder(text: str) -> bool:
    """True for texts like ``"..."``, ``"<text 1>"``, ``"text 2"``, ``"second text"`` (format-example copies)."""
    return bool(_PLACEHOLDER.match(" ".join(text.strip().split())))


def _join_values(value: Any) -> Any:
    if isinstance(value, list):
        return "; ".join(str(v).strip() for v in value if str(v).strip())
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return value


def summary_model(attribute_keys: Sequence[str]) -> type[BaseModel]:
    """Pydantic model of the stage-1 attribute summary S = {(a_i, v_i)} (eq. 6): one non-empty string per attribute."""
    if not attribute_keys:
        raise GenerationConfigError("stage 1 needs at least one attribute for the LLM to summarise")
    fields = {key: (str, Field(min_length=2, max_length=600)) for key in attribute_keys}

    def coerce(cls, value):  # lists / objects from the model become one string
        return _join_values(value)

    def informative(cls, value: str) -> str:
        if is_placeholder(value) or not re.search(r"[^\W\d_]{2}", value):
            raise ValueError(f"{value!r} is a placeholder, not a description of the examples")
        return value.strip()

    validators = {
        "coerce_values": field_validator(*attribute_keys, mode="before")(classmethod(coerce)),
        "informative_values": field_validator(*attribute_keys)(classmethod(informative)),
    }
    return create_model("AttributeSummary", __validators__=validators, **fields)


def summary_json_schema(attribute_keys: Sequence[str]) -> dict:
    return {
        "type": "object",
        "properties": {key: {"type": "string"} for key in attribute_keys},
        "required": list(attribute_keys),
    }


class SampleSet(BaseModel):
    """A generation answer: ``{"samples": [...]}`` with at least ``n`` distinct, new, non-trivial texts.

    The validation context carries ``n``, ``min_words`` and the normalised demonstrations; a sample copied
    verbatim from the demonstrations, an empty or duplicate sample, or too few samples is an error that
    the client sends back to the model (re-ask). With ``lenient`` in the context, bad samples are dropped
    instead (salvage after the last re-ask).
    """

    samples: list[str]

    @field_validator("samples", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        if isinstance(value, list):
            out = []
            for item in value:
                if isinstance(item, dict):  # {"text": ...} / {"review": ...}: take the longest string field
                    strings = [v for v in item.values() if isinstance(v, str)]
                    item = max(strings, key=len) if strings else ""
                out.append(item if isinstance(item, str) else str(item))
            return out
        return value

    @field_validator("samples")
    @classmethod
    def _check(cls, samples: list[str], info: ValidationInfo) -> list[str]:
        context = info.context or {}
        n = int(context.get("n", 1))
        kept, problems = sample_problems(samples, int(context.get("min_words", 1)), context.get("demonstrations", set()))
        if bool(context.get("lenient", False)):
            return kept[:n]
        error = rejection(problems, n, len(kept))
        if error:
            raise ValueError(error)
        if len(kept) < n:
            raise ValueError(f"only {len(kept)} usable samples, {n} were asked for")
        return kept[:n]


def sample_problems(samples: Sequence[str], min_words: int, demonstrations: set[str]) -> tuple[list[str], list[str]]:
    """(the usable samples, in order; what is wrong with each of the others, in order).

    A sample is unusable when it is shorter than ``min_words`` words, a copy of the format example, a copy of a
    demonstration (``demonstrations`` holds their :func:`duplicate_key`) or a repeat of an earlier sample."""
    kept, seen, problems = [], set(), []
    for index, raw in enumerate(samples):
        text = " ".join(raw.split())
        if len(text) > 2 and text[0] == "<" and text[-1] == ">":  # "<a real text>": the format's brackets kept
            text = text[1:-1].strip()
        norm = duplicate_key(text)
        if len(text.split()) < min_words:
            problems.append(f"sample {index + 1} is empty or shorter than {min_words} words")
        elif is_placeholder(text):
            problems.append(f"sample {index + 1} ({text!r}) copies the format example; write a real text")
        elif norm in demonstrations:
            problems.append(f"sample {index + 1} copies an example verbatim; write new text")
        elif norm in seen:
            problems.append(f"sample {index + 1} repeats another sample")
        else:
            seen.add(norm)
            kept.append(text)
    return kept, problems


def rejection(problems: list[str], n: int, kept: int) -> str:
    """The re-ask message for an answer with these ``problems`` and ``kept`` usable samples of the ``n`` asked:
    a verbatim copy of a demonstration always rejects it; other problems only when fewer than ``n`` samples are
    usable. Empty when the answer is not rejected for its problems."""
    copies = [p for p in problems if "verbatim" in p]
    if copies:
        return "; ".join(copies[:4])
    if problems and kept < n:
        return "; ".join(problems[:4]) + f"; {n} distinct samples are needed"
    return ""


def samples_json_schema(n: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "samples": {"type": "array", "items": {"type": "string"}, "minItems": n, "maxItems": n}
        },
        "required": ["samples"],
    }


def _as_samples_object(parsed: Any) -> Any:
    if isinstance(parsed, list):
        return {"samples": parsed}
    if isinstance(parsed, dict) and "samples" not in parsed:
        lists = [v for v in parsed.values() if isinstance(v, list)]
        if len(lists) == 1:
            return {"samples": lists[0]}
    return parsed


def sample_validator(n: int, min_words: int, demonstrations: Sequence[str] = ()):
    context = {"n": n, "min_words": min_words, "demonstrations": {duplicate_key(t) for t in demonstrations}}

    def validate(parsed: Any) -> list[str]:
        return SampleSet.model_validate(_as_samples_object(parsed), context=context).samples

    def salvage(parsed: Any) -> list[str]:
        return SampleSet.model_validate(
            _as_samples_object(parsed), context={**context, "lenient": True}
        ).samples

    return validate, salvage


def sample_stop_check(n: int, min_words: int, demonstrations: Sequence[str] = ()):
    """``check(partial_text) -> str``: the rejection of a samples answer that is certain before it ends, else "".

    Reads the samples the text completes so far (:func:`~synalign_kedro.core.json_extract.complete_items`:
    an answer still streaming, or cut off at ``max_tokens``). Under the schema of :func:`samples_json_schema`,
    which the server's grammar enforces, an answer holds at most ``n`` samples, so one unusable sample (a repeat,
    a copy, a placeholder, too short) already means fewer than ``n`` usable ones: the answer is rejected whatever
    follows, with the message :class:`SampleSet` gives it. The LLM client stops streaming such an answer there
    (``llm.stop_failing_answers``): the small models' loops, one sample written again and again until
    ``max_tokens``, end at the first repeat (docs/generation.md, "Stopping answers that fail")."""
    demonstration_keys = {duplicate_key(t) for t in demonstrations}

    def check(text: str) -> str:
        items = SampleSet._texts(complete_items(text))
        kept, problems = sample_problems(items, min_words, demonstration_keys)
        return rejection(problems, n, len(kept))

    return check


def values_schema(n: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "values": {"type": "array", "items": {"type": "string"}, "minItems": n, "maxItems": n}
        },
        "required": ["values"],
    }


def values_validator(n: int):
    def validate(parsed: Any) -> list[str]:
        items = parsed.get("values") if isinstance(parsed, dict) else parsed
        if not isinstance(items, list):
            raise ValueError('expected {"values": [...]}')
        unique = list(dict.fromkeys(" ".join(str(v).split()) for v in items if str(v).strip()))
        if len(unique) < max(2, n // 2):
            raise ValueError(f"only {len(unique)} distinct values, {n} were asked for")
        return unique[:n]

    return validate

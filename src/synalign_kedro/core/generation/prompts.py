"""Prompt rendering (SynAlign appendix A.3, figures 6-7): ``str.format`` templates from the configuration,
the per-data-set placeholders, demonstrations as JSON, and attributes measured in code instead of asked."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from .config import GenerationConfigError, MethodConfig


def render(template: str, **values: Any) -> str:
    """``str.format`` that names the missing placeholder instead of raising a bare ``KeyError``."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    missing = sorted(fields - values.keys())
    if missing:
        raise GenerationConfigError(
            f"prompt template uses unknown placeholder(s) {missing}; known: {sorted(values)}"
        )
    return template.format(**values)


def attribute_key(attribute: str) -> str:
    """JSON field name of an attribute: ``"review length"`` -> ``"review_length"``."""
    key = re.sub(r"[^0-9a-zA-Z]+", "_", attribute.strip().lower()).strip("_")
    if not key:
        raise GenerationConfigError(f"attribute {attribute!r} has no usable name")
    return key


def word_count_description(texts: Sequence[str]) -> str:
    """Length of the demonstrations in words, computed (small LLMs miscount): mean and range."""
    counts = [len(t.split()) for t in texts if t.strip()]
    if not counts:
        return "unknown"
    return f"about {round(float(np.mean(counts)))} words (between {min(counts)} and {max(counts)} words)"


def computed_attribute_values(texts: Sequence[str], computed: dict[str, str]) -> dict[str, str]:
    measures = {"word_count": word_count_description}
    return {attribute_key(name): measures[measure](texts) for name, measure in computed.items()}


def dataset_context(profile: dict, labels: dict[str, str], attributes: Sequence[str]) -> dict[str, Any]:
    """The placeholders every template may use: ``{domain} {description} {labels} {attributes}``."""
    domain = str(profile.get("domain") or "text")
    return {
        "domain": domain,
        "description": str(profile.get("description") or domain),
        "labels": ", ".join(labels),
        "attributes": "\n".join(f"- {attribute}" for attribute in attributes) or "- (none)",
    }


def demonstration_texts(row: dict, config: MethodConfig) -> list[str]:
    texts = [str(t) for t in list(row["texts"])[: config.max_demonstrations]]
    return [
        t if len(t) <= config.max_demo_chars else t[: config.max_demo_chars].rsplit(" ", 1)[0] + " ..."
        for t in texts
    ]


def examples_json(texts: Sequence[str], label: str) -> str:
    return json.dumps([{"text": t, "label": label} for t in texts], ensure_ascii=False, indent=1)


def messages(system: str, user: str) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system.strip() else []) + [
        {"role": "user", "content": user}
    ]


def summary_format(keys: Sequence[str]) -> str:
    return json.dumps({key: f"<{key.replace('_', ' ')} of the examples>" for key in keys}, indent=1)


def samples_format(n: int) -> str:
    return json.dumps({"samples": [f"<text {i + 1}>" for i in range(min(n, 2))] + (["..."] if n > 2 else [])})

"""The LLM as a zero-shot classifier: the "LLM zero-shot" row of SynAlign's table 1 (sec. 4.2).

The generator model labels the real test texts itself, with no real example in the prompt: the reference a
data-augmentation method has to beat to be worth its cost (if the LLM already classifies well, a small model
trained on its synthetic data is a distillation of it).

Texts go ``batch_size`` to a call, numbered; the answer is ``{"labels": [...]}``, one label per text in order,
each constrained to the label set by the JSON schema (llama.cpp and vLLM decode the enum exactly), validated by
:func:`labels_validator` and re-asked by the project's client like any other task. A batch whose answers all
fail leaves its texts unanswered (``None``): they count as wrong in the accuracy, and their number is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from synalign_kedro.core.llm_client import ChatTask, LLMClient, LLMUsage


def labels_schema(labels: Sequence[str], n: int) -> dict:
    """JSON schema of one answer: exactly ``n`` labels, each one of ``labels``."""
    return {
        "type": "object",
        "properties": {
            "labels": {"type": "array", "items": {"enum": list(labels)}, "minItems": n, "maxItems": n}
        },
        "required": ["labels"],
    }


def labels_validator(labels: Sequence[str], n: int):
    """A validator for :class:`ChatTask`: the answer's ``labels`` list, exactly ``n`` known labels (matched
    case-insensitively, surrounding spaces ignored), else a ``ValueError`` that the client sends back."""
    canonical = {str(label).strip().lower(): str(label) for label in labels}

    def validate(parsed: Any) -> list[str]:
        values = parsed.get("labels") if isinstance(parsed, dict) else parsed
        if not isinstance(values, list):
            raise ValueError('expected {"labels": [...]}, one label per text')
        if len(values) != n:
            raise ValueError(f"{len(values)} labels for {n} texts: give exactly one label per text, in order")
        unknown = [str(v) for v in values if str(v).strip().lower() not in canonical]
        if unknown:
            raise ValueError(f"unknown labels {unknown[:3]}: use only {sorted(canonical.values())}")
        return [canonical[str(v).strip().lower()] for v in values]

    return validate


def zero_shot_tasks(
    texts: Sequence[str],
    labels: Sequence[str],
    profile: Mapping[str, Any],
    batch_size: int = 10,
) -> list[ChatTask]:
    """One task per ``batch_size`` texts. ``profile`` is the data set's profile (``domain``, ``description``,
    ``labels``: label -> meaning, may be empty)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not labels:
        raise ValueError("zero-shot classification needs at least one label")
    meanings = profile.get("labels") or {}
    label_lines = "\n".join(
        f"- {label}" + (f": {meanings[label]}" if meanings.get(label) else "") for label in labels
    )
    domain = profile.get("domain", "text")
    header = (
        f"Data: {profile.get('description', domain)}.\n"
        f"Classify each {domain} below into exactly one of these labels:\n{label_lines}\n\n"
    )
    tasks = []
    for start in range(0, len(texts), batch_size):
        batch = [" ".join(str(text).split()) for text in texts[start : start + batch_size]]
        numbered = "\n".join(f"{index + 1}. {text}" for index, text in enumerate(batch))
        user = (
            header + f"Texts:\n{numbered}\n\n"
            f'Answer with JSON only: {{"labels": [...]}}, {len(batch)} labels, one per text, in the same order.'
        )
        tasks.append(
            ChatTask(
                task_id=f"zero_shot:{start}",
                messages=[
                    {"role": "system", "content": "You are a careful text classifier. You answer with JSON only."},
                    {"role": "user", "content": user},
                ],
                schema_name="labels",
                json_schema=labels_schema(labels, len(batch)),
                validate=labels_validator(labels, len(batch)),
                items=len(batch),
            )
        )
    return tasks


def classify_zero_shot(
    client: LLMClient,
    texts: Sequence[str],
    labels: Sequence[str],
    profile: Mapping[str, Any],
    batch_size: int = 10,
) -> tuple[list[str | None], LLMUsage]:
    """The LLM's label for each text (``None`` where its batch failed validation after the re-asks)."""
    tasks = zero_shot_tasks(texts, labels, profile, batch_size)
    results, usage = client.run(tasks, description="zero-shot labels")
    predictions: list[str | None] = []
    for task, result in zip(tasks, results, strict=True):
        predictions.extend(result.value if result.ok else [None] * int(task.items or 0))
    return predictions, usage

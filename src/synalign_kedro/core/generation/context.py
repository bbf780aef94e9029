"""What a generation method works with: one :class:`GenerationContext` per run (client, settings, templates,
labels, the call budget, usage accounting) instead of long positional argument lists, and the "write n
samples" call every method sends, turned into pool rows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..json_extract import JSONExtractionError, complete_items, extract_json
from ..llm_client import ChatTask, LLMClient, LLMUsage, TaskResult
from .answers import duplicate_key, sample_stop_check, sample_validator, samples_json_schema
from .config import MethodConfig, PromptTemplates
from .prompts import messages

POOL_COLUMNS = [
    "synthetic_id", "text", "label", "method", "batch_id", "summary", "prompt_hash", "model", "raw_response",
]  # fmt: skip


@dataclass
class GenerationContext:
    """One method's run: inputs, the call budget (``sizes``: samples asked per call) and the accounting of
    every LLM call (usage per stage, failed tasks)."""

    client: LLMClient
    config: MethodConfig
    prompts: PromptTemplates
    profile: dict
    labels: dict[str, str]  # label -> description
    label_weights: dict[str, float]  # label -> real frequency
    attributes: list[str]
    placeholders: dict[str, Any]  # {domain} {description} {labels} {attributes}
    sizes: list[int]
    demonstration_batches: pd.DataFrame | None = None
    # what a method that measures its own pool needs (``EMBEDDING_METHODS``: synalign_feedback)
    real_train: pd.DataFrame | None = None
    real_embeddings: np.ndarray | None = None
    embed: Callable[[list[str]], np.ndarray] | None = None
    usage: LLMUsage = field(default_factory=LLMUsage)
    stage_usage: dict[str, LLMUsage] = field(default_factory=dict)  # a stage may run in several waves
    failures: list[dict] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # a method's own report entries (e.g. its trace)

    @property
    def stages(self) -> dict[str, dict]:
        """Usage per progress stage, as the usage report records it."""
        return {stage: usage.as_dict() for stage, usage in self.stage_usage.items()}

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def model(self) -> str:
        return self.client.identity

    def run(self, tasks: list[ChatTask], stage: str) -> list[TaskResult]:
        """Run ``tasks`` as one progress stage, recording usage and failures."""
        results, usage = self.client.run(tasks, description=f"{self.method}:{stage}")
        self.usage.add(usage)
        self.stage_usage.setdefault(stage, LLMUsage()).add(usage)
        self.failures.extend(
            {"task_id": r.task_id, "stage": stage, "error": r.error} for r in results if not r.ok
        )
        return results

    def sample_call(
        self,
        task_id: str,
        user: str,
        n: int,
        demonstrations: Sequence[str],
        seed_offset: int,
        label: str,
        batch_id: int = -1,
        summary: str = "",
    ) -> SampleCall:
        """The samples task every method sends: n samples, validated against the demonstrations it saw."""
        validate, salvage = sample_validator(n, self.config.min_words, demonstrations)
        prompt = messages(self.prompts.system, user)
        task = ChatTask(
            task_id, prompt, "samples", samples_json_schema(n), validate, seed_offset=seed_offset,
            stop_check=sample_stop_check(n, self.config.min_words, demonstrations),
        )  # fmt: skip
        return SampleCall(task, label, batch_id, summary, prompt, salvage, n)

    def run_sample_calls(
        self,
        calls: list[SampleCall],
        stage: str,
        run: Callable[[list[ChatTask], str], list[TaskResult]] | None = None,
    ) -> list[dict]:
        """Run the calls (one progress stage; ``run`` instead of :meth:`run`, e.g. within a token budget) and
        turn each answer into pool rows."""
        results = (run or self.run)([call.task for call in calls], stage)
        return self.pool_rows_of(calls, {result.task_id: result for result in results})

    def pool_rows_of(self, calls: list[SampleCall], answers: dict[str, TaskResult]) -> list[dict]:
        """The pool rows of ``calls`` (in their order) from their results, keyed by task id."""
        rows: list[dict] = []
        for call in calls:
            rows += pool_rows(answers[call.task.task_id], call, self.method, self.model, self.config.salvage_partial)
        return rows

    def run_pipelined(
        self,
        tasks: list[ChatTask],
        stage: str,
        follow: Callable[[int, TaskResult], list[SampleCall]],
        follow_stage: str,
    ) -> dict[str, TaskResult]:
        """Run ``tasks`` as ``stage``; as the result of ``tasks[i]`` comes in, the samples calls
        ``follow(i, result)`` join the same LLM run as ``follow_stage`` (:meth:`LLMClient.run`'s ``then``).
        Usage and failures are recorded per stage (the stages overlap, so their wall time is the method's
        only). Returns every result, keyed by task id."""
        first = len(tasks)  # the run's results are ``tasks``' in order, then the follow-ups'

        def stage_of(index: int) -> str:
            return stage if index < first else follow_stage

        per_stage = {stage: LLMUsage(), follow_stage: LLMUsage()}

        def then(index: int, result: TaskResult, usage: LLMUsage) -> list[ChatTask]:
            per_stage[stage_of(index)].add(usage)
            return [call.task for call in follow(index, result)] if index < first else []

        results, usage = self.client.run(tasks, f"{self.method}:{stage}+{follow_stage}", then)
        self.usage.add(usage)
        for name, stage_usage in per_stage.items():
            self.stage_usage.setdefault(name, LLMUsage()).add(stage_usage)
        self.failures.extend(
            {"task_id": r.task_id, "stage": stage_of(index), "error": r.error}
            for index, r in enumerate(results)
            if not r.ok
        )
        return {result.task_id: result for result in results}


@dataclass(frozen=True)
class SampleCall:
    """One "write n samples" call of any method: its task and what its pool rows record."""

    task: ChatTask
    label: str
    batch_id: int
    summary: str
    messages: list[dict]
    salvage: Any
    asked: int  # samples asked: what a salvaged failure keeps at most


def short_hash(*parts: Any, length: int = 16) -> str:
    payload = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def _answer_json(text: str):
    """The JSON of an answer, or the samples it completed before it was cut off or stopped early."""
    try:
        return extract_json(text)
    except JSONExtractionError:
        return complete_items(text)


def pool_rows(result: TaskResult, call: SampleCall, method: str, model: str, allow_salvage: bool) -> list[dict]:
    """The pool rows of one answer. After the last failed re-ask, when ``allow_salvage``: the valid samples of
    all the task's answers, latest first, each text once (:func:`duplicate_key`), at most ``call.asked``; each row
    records the answer it came from. A re-ask is asked afresh (``LLMClient._reask_messages``), so two rejected
    answers, e.g. each with a few samples that repeat, often hold enough distinct ones between them."""
    raw = result.raw_responses[-1] if result.raw_responses else ""
    texts: list[tuple[str, str]] = [(text, raw) for text in result.value] if result.ok else []
    if not result.ok and allow_salvage:
        seen: set[str] = set()
        for candidate in reversed(result.raw_responses):
            if len(texts) >= call.asked:
                break
            try:
                samples = call.salvage(_answer_json(candidate))
            except Exception:  # noqa: BLE001 - nothing usable in this answer
                continue
            for text in samples:
                key = duplicate_key(text)
                if key not in seen and len(texts) < call.asked:
                    seen.add(key)
                    texts.append((text, candidate))
    prompt_hash = short_hash(call.messages)
    return [
        {
            "synthetic_id": short_hash(method, result.task_id, index, text),
            "text": text,
            "label": call.label,
            "method": method,
            "batch_id": int(call.batch_id),
            "summary": call.summary,
            "prompt_hash": prompt_hash,
            "model": model,
            "raw_response": answer,
        }
        for index, (text, answer) in enumerate(texts)
    ]

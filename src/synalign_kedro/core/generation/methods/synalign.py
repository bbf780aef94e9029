"""SynAlign's Latent Attribute Reasoning (SynAlign sec. 3.3, eq. 6-7, appendix A.3, figures 6-7).

Stage 1 sends a demonstration batch and the dataset's key attributes A and gets a JSON attribute summary
S = LLM(D_dem, A, P_1) (eq. 6), validated by a pydantic model built from A; measurable attributes (e.g. review
length) are computed from the demonstrations in code, never asked of the LLM. Stage 2 asks for ``n_per_call``
distinct samples that follow S, D_gen = LLM(S, P_2) (eq. 7); the label is the batch's label.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ...llm_client import ChatTask, TaskResult
from ..answers import summary_json_schema, summary_model
from ..context import GenerationContext, SampleCall
from ..planning import plan_demonstration_calls
from ..prompts import (
    attribute_key,
    computed_attribute_values,
    demonstration_texts,
    examples_json,
    messages,
    render,
    samples_format,
    summary_format,
)

Runner = Callable[[list[ChatTask], str], list[TaskResult]]


def summarised_attributes(context: GenerationContext) -> list[str]:
    """The attributes stage 1 asks the LLM for: the profile's, less those measured in code."""
    computed_keys = {attribute_key(a) for a in context.prompts.computed_attributes}
    return [a for a in context.attributes if attribute_key(a) not in computed_keys]


def summarise_batches(
    context: GenerationContext,
    batches: dict[int, dict],
    asked: list[str],
    stage: str = "stage1",
    run: Runner | None = None,
    task_prefix: str = "s1",
) -> dict[int, dict]:
    """Stage 1 (eq. 6): one attribute summary per distinct demonstration batch; the failed ones are missing.

    ``run`` replaces :meth:`GenerationContext.run` (e.g. within a token budget); ``stage`` names the progress
    stage and the task ids."""
    prompts = context.prompts
    asked_keys = [attribute_key(a) for a in asked]
    schema_model = summary_model(asked_keys)
    tasks, order = [], []
    for batch_id, row in batches.items():
        label = str(row["label"])
        texts = demonstration_texts(row, context.config)
        user = render(
            prompts.stage1, **context.placeholders, label=label, label_description=context.labels[label],
            examples=examples_json(texts, label), attributes_to_summarise="\n".join(f"- {a}" for a in asked),
            json_format=summary_format(asked_keys),
        )  # fmt: skip
        tasks.append(
            ChatTask(
                task_id=f"{context.method}:{task_prefix}:{batch_id}",
                messages=messages(prompts.system, user),
                schema_name="attribute_summary",
                json_schema=summary_json_schema(asked_keys),
                validate=lambda parsed, m=schema_model: m.model_validate(parsed).model_dump(),
                seed_offset=batch_id,
            )
        )
        order.append(batch_id)
    summaries: dict[int, dict] = {}
    for batch_id, result in zip(order, (run or context.run)(tasks, stage), strict=True):
        if result.ok:
            texts = list(batches[batch_id]["texts"])
            # measurable attributes come from the demonstrations, not from the LLM
            summaries[batch_id] = {**result.value, **computed_attribute_values(texts, prompts.computed_attributes)}
    return summaries


def samples_call(
    context: GenerationContext,
    task_id: str,
    label: str,
    n: int,
    summary: dict,
    demonstrations: list[str],
    seed_offset: int,
    batch_id: int,
    guidance: str = "",
) -> SampleCall:
    """Stage 2 (eq. 7): ask for ``n`` samples of ``label`` that follow ``summary`` (and, in a feedback round,
    the rendered ``guidance`` after it)."""
    user = render(
        context.prompts.stage2, **context.placeholders, label=label, label_description=context.labels[label], n=n,
        summary=json.dumps(summary, ensure_ascii=False, indent=1) + guidance, json_format=samples_format(n),
    )  # fmt: skip
    record = json.dumps(summary, ensure_ascii=False, sort_keys=True)
    return context.sample_call(task_id, user, n, demonstrations, seed_offset, label, batch_id, record)


def two_stage_round(
    context: GenerationContext,
    sizes: list[int],
    stage_prefix: str = "",
    run_summaries: Runner | None = None,
    run_samples: Runner | None = None,
) -> list[dict]:
    """One SynAlign generation over the tracker's demonstration batches: ``len(sizes)`` samples calls, shared
    among labels by their real frequency (:func:`plan_demonstration_calls`), each after its batch's summary."""
    plan = plan_demonstration_calls(context.demonstration_batches, context.label_weights, len(sizes))
    batches = {int(row["batch_id"]): row for row in plan}
    summaries = summarise_batches(
        context, batches, summarised_attributes(context), f"{stage_prefix}stage1", run_summaries,
        f"{stage_prefix}s1",
    )  # fmt: skip

    # Stage 2 (eq. 7): n_per_call samples per summary; the label is the batch's. A call whose batch got no
    # summary goes to another summarised batch of the same label, so the budget is kept where possible.
    fallback: dict[str, list[int]] = {}
    for batch_id in batches:
        if batch_id in summaries:
            fallback.setdefault(str(batches[batch_id]["label"]), []).append(batch_id)
    calls = []
    for call_index, (row, n) in enumerate(zip(plan, sizes, strict=True)):
        batch_id, label = int(row["batch_id"]), str(row["label"])
        if batch_id not in summaries:
            if not fallback.get(label):
                continue
            batch_id = fallback[label][call_index % len(fallback[label])]
            row = batches[batch_id]
        calls.append(
            samples_call(
                context, f"{context.method}:{stage_prefix}s2:{call_index}", label, n, summaries[batch_id],
                list(row["texts"]), 10_000 + call_index, batch_id,
            )
        )  # fmt: skip
    return context.run_sample_calls(calls, f"{stage_prefix}stage2", run_samples)


def synalign(context: GenerationContext) -> list[dict]:
    return two_stage_round(context, context.sizes)

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


def summary_tasks(
    context: GenerationContext, batches: dict[int, dict], asked: list[str], task_prefix: str = "s1"
) -> tuple[list[ChatTask], list[int]]:
    """Stage 1 (eq. 6) tasks: one attribute summary per distinct demonstration batch, and their batch ids."""
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
    return tasks, order


def batch_summary(context: GenerationContext, batch: dict, result: TaskResult) -> dict:
    """A validated stage-1 answer, with the measurable attributes computed from the demonstrations, not asked
    of the LLM."""
    return {**result.value, **computed_attribute_values(list(batch["texts"]), context.prompts.computed_attributes)}


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
    tasks, order = summary_tasks(context, batches, asked, task_prefix)
    return {
        batch_id: batch_summary(context, batches[batch_id], result)
        for batch_id, result in zip(order, (run or context.run)(tasks, stage), strict=True)
        if result.ok
    }


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
    among labels by their real frequency (:func:`plan_demonstration_calls`), each after its batch's summary.

    Without ``run_summaries``/``run_samples`` (a token budget's runners) the two stages are one LLM run: a
    batch's samples calls are sent as soon as its summary is in (:meth:`GenerationContext.run_pipelined`), so
    with several server slots no call waits for the slowest summary. The calls, their seeds and the rows are
    those of stage 1 then stage 2; one request at a time, even the order of the requests is."""
    plan = plan_demonstration_calls(context.demonstration_batches, context.label_weights, len(sizes))
    batches = {int(row["batch_id"]): row for row in plan}
    asked = summarised_attributes(context)
    stage1, stage2 = f"{stage_prefix}stage1", f"{stage_prefix}stage2"
    calls: dict[int, SampleCall] = {}  # call index -> its samples call

    def call_on(call_index: int, batch_id: int) -> SampleCall:
        row = batches[batch_id]
        return samples_call(
            context, f"{context.method}:{stage_prefix}s2:{call_index}", str(row["label"]), sizes[call_index],
            summaries[batch_id], list(row["texts"]), 10_000 + call_index, batch_id,
        )  # fmt: skip

    answers: dict[str, TaskResult] = {}
    if run_summaries is None and run_samples is None:
        planned: dict[int, list[int]] = {}  # batch -> the indices of the calls planned on it
        for call_index, row in enumerate(plan):
            planned.setdefault(int(row["batch_id"]), []).append(call_index)
        tasks, order = summary_tasks(context, batches, asked, f"{stage_prefix}s1")
        summaries: dict[int, dict] = {}

        def follow(index: int, result: TaskResult) -> list[SampleCall]:
            batch_id = order[index]
            if not result.ok:
                return []
            summaries[batch_id] = batch_summary(context, batches[batch_id], result)
            new_calls = {i: call_on(i, batch_id) for i in planned.get(batch_id, [])}
            calls.update(new_calls)
            return list(new_calls.values())

        answers = context.run_pipelined(tasks, stage1, follow, stage2)
    else:
        summaries = summarise_batches(context, batches, asked, stage1, run_summaries, f"{stage_prefix}s1")

    # Stage 2 (eq. 7): n_per_call samples per summary; the label is the batch's. A call whose batch got no
    # summary goes to another summarised batch of the same label, so the budget is kept where possible.
    fallback: dict[str, list[int]] = {}
    for batch_id in batches:
        if batch_id in summaries:
            fallback.setdefault(str(batches[batch_id]["label"]), []).append(batch_id)
    for call_index, row in enumerate(plan):
        batch_id, label = int(row["batch_id"]), str(row["label"])
        if call_index in calls:
            continue
        if batch_id not in summaries:
            if not fallback.get(label):
                continue
            batch_id = fallback[label][call_index % len(fallback[label])]
        calls[call_index] = call_on(call_index, batch_id)
    ordered = [calls[i] for i in sorted(calls)]
    unanswered = [call for call in ordered if call.task.task_id not in answers]
    if unanswered:
        answers.update(
            (result.task_id, result)
            for result in (run_samples or context.run)([call.task for call in unanswered], stage2)
        )
    return context.pool_rows_of(ordered, answers)


def synalign(context: GenerationContext) -> list[dict]:
    return two_stage_round(context, context.sizes)

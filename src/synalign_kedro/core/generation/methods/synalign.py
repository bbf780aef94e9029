"""SynAlign's Latent Attribute Reasoning (SynAlign sec. 3.3, eq. 6-7, appendix A.3, figures 6-7).

Stage 1 sends a demonstration batch and the dataset's key attributes A and gets a JSON attribute summary
S = LLM(D_dem, A, P_1) (eq. 6), validated by a pydantic model built from A; measurable attributes (e.g. review
length) are computed from the demonstrations in code, never asked of the LLM. Stage 2 asks for ``n_per_call``
distinct samples that follow S, D_gen = LLM(S, P_2) (eq. 7); the label is the batch's label.
"""

from __future__ import annotations

import json

from ...llm_client import ChatTask
from ..answers import summary_json_schema, summary_model
from ..context import GenerationContext
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


def summarise_batches(context: GenerationContext, batches: dict[int, dict], asked: list[str]) -> dict[int, dict]:
    """Stage 1 (eq. 6): one attribute summary per distinct demonstration batch; the failed ones are missing."""
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
                task_id=f"synalign:s1:{batch_id}",
                messages=messages(prompts.system, user),
                schema_name="attribute_summary",
                json_schema=summary_json_schema(asked_keys),
                validate=lambda parsed, m=schema_model: m.model_validate(parsed).model_dump(),
                seed_offset=batch_id,
            )
        )
        order.append(batch_id)
    summaries: dict[int, dict] = {}
    for batch_id, result in zip(order, context.run(tasks, "stage1"), strict=True):
        if result.ok:
            texts = list(batches[batch_id]["texts"])
            # measurable attributes come from the demonstrations, not from the LLM
            summaries[batch_id] = {**result.value, **computed_attribute_values(texts, prompts.computed_attributes)}
    return summaries


def synalign(context: GenerationContext) -> list[dict]:
    computed_keys = {attribute_key(a) for a in context.prompts.computed_attributes}
    asked = [a for a in context.attributes if attribute_key(a) not in computed_keys]
    plan = plan_demonstration_calls(context.demonstration_batches, context.label_weights, len(context.sizes))
    batches = {int(row["batch_id"]): row for row in plan}
    summaries = summarise_batches(context, batches, asked)

    # Stage 2 (eq. 7): n_per_call samples per summary; the label is the batch's. A call whose batch got no
    # summary goes to another summarised batch of the same label, so the budget is kept where possible.
    fallback: dict[str, list[int]] = {}
    for batch_id in batches:
        if batch_id in summaries:
            fallback.setdefault(str(batches[batch_id]["label"]), []).append(batch_id)
    calls = []
    for call_index, (row, n) in enumerate(zip(plan, context.sizes, strict=True)):
        batch_id, label = int(row["batch_id"]), str(row["label"])
        if batch_id not in summaries:
            if not fallback.get(label):
                continue
            batch_id = fallback[label][call_index % len(fallback[label])]
            row = batches[batch_id]
        user = render(
            context.prompts.stage2, **context.placeholders, label=label,
            label_description=context.labels[label], n=n,
            summary=json.dumps(summaries[batch_id], ensure_ascii=False, indent=1), json_format=samples_format(n),
        )  # fmt: skip
        calls.append(
            context.sample_call(
                f"synalign:s2:{call_index}", user, n, list(row["texts"]), 10_000 + call_index, label, batch_id,
                json.dumps(summaries[batch_id], ensure_ascii=False, sort_keys=True),
            )
        )
    return context.run_sample_calls(calls, "stage2")

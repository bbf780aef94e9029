"""One-stage SynAlign (the ablation of SynAlign table 4): demonstrations straight to samples, no summary."""

from __future__ import annotations

from ..context import GenerationContext
from ..planning import plan_demonstration_calls
from ..prompts import demonstration_texts, examples_json, render, samples_format


def synalign_one_stage(context: GenerationContext) -> list[dict]:
    plan = plan_demonstration_calls(context.demonstration_batches, context.label_weights, len(context.sizes))
    calls = []
    for call_index, (row, n) in enumerate(zip(plan, context.sizes, strict=True)):
        batch_id, label = int(row["batch_id"]), str(row["label"])
        texts = demonstration_texts(row, context.config)
        user = render(
            context.prompts.one_stage, **context.placeholders, label=label,
            label_description=context.labels[label], n=n, examples=examples_json(texts, label),
            json_format=samples_format(n),
        )  # fmt: skip
        calls.append(
            context.sample_call(
                f"one_stage:{call_index}", user, n, list(row["texts"]), 20_000 + call_index, label, batch_id
            )
        )
    return context.run_sample_calls(calls, "generate")

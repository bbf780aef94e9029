"""SimPrompt (SynAlign sec. 4.1): a class-conditional plain prompt, no demonstrations."""

from __future__ import annotations

from ..context import GenerationContext
from ..planning import allocate_by_frequency
from ..prompts import render, samples_format


def simprompt(context: GenerationContext) -> list[dict]:
    sequence = allocate_by_frequency(list(context.labels), context.label_weights, len(context.sizes))
    calls = []
    for call_index, (label, n) in enumerate(zip(sequence, context.sizes, strict=True)):
        user = render(
            context.prompts.simprompt, **context.placeholders, label=label,
            label_description=context.labels[label], n=n, json_format=samples_format(n),
        )  # fmt: skip
        calls.append(context.sample_call(f"simprompt:{call_index}", user, n, (), 30_000 + call_index, label))
    return context.run_sample_calls(calls, "generate")

"""AttrPrompt (Yu et al. 2023; SynAlign sec. 4.1): values per attribute dimension are configured
(``attrprompt_values``) or proposed by the LLM, and each prompt gets a random combination of one value per
dimension."""

from __future__ import annotations

import json

import numpy as np

from ...llm_client import ChatTask
from ..answers import values_schema, values_validator
from ..context import GenerationContext
from ..planning import allocate_by_frequency
from ..prompts import attribute_key, messages, render, samples_format


def attribute_values(context: GenerationContext) -> dict[str, list[str]]:
    """Values per attribute: the configured ones, and the LLM's for the others (AttrPrompt step 1)."""
    prompts, attributes = context.prompts, context.attributes
    values = {a: list(v) for a, v in prompts.attrprompt_values.items() if a in attributes}
    to_generate = [a for a in attributes if a not in values]
    if not to_generate:
        return values
    n_values = context.config.n_attribute_values
    tasks = []
    for index, attribute in enumerate(to_generate):
        user = render(
            prompts.attribute_values, **context.placeholders, attribute=attribute, n=n_values,
            json_format=json.dumps({"values": ["...", "..."]}),
        )  # fmt: skip
        tasks.append(
            ChatTask(
                f"attrprompt:values:{attribute_key(attribute)}",
                messages(prompts.system, user),
                "values",
                values_schema(n_values),
                values_validator(n_values),
                seed_offset=40_000 + index,
            )
        )
    for attribute, result in zip(to_generate, context.run(tasks, "attribute_values"), strict=True):
        if result.ok:
            values[attribute] = result.value
    return values


def attrprompt(context: GenerationContext) -> list[dict]:
    values = attribute_values(context)
    dimensions = [a for a in context.attributes if values.get(a)]
    sequence = allocate_by_frequency(list(context.labels), context.label_weights, len(context.sizes))
    rng = np.random.default_rng(context.config.seed)
    calls = []
    for call_index, (label, n) in enumerate(zip(sequence, context.sizes, strict=True)):
        combination = {a: values[a][int(rng.integers(len(values[a])))] for a in dimensions}
        attribute_lines = "\n".join(f"- {a}: {v}" for a, v in combination.items()) or "- (none)"
        user = render(
            context.prompts.attrprompt, **context.placeholders, label=label,
            label_description=context.labels[label], n=n, attribute_values=attribute_lines,
            json_format=samples_format(n),
        )  # fmt: skip
        summary = json.dumps(combination, ensure_ascii=False, sort_keys=True)
        calls.append(
            context.sample_call(f"attrprompt:{call_index}", user, n, (), 50_000 + call_index, label, summary=summary)
        )
    return context.run_sample_calls(calls, "generate")

"""The two LLM steps: the copula step p_copula (LLMSYNTHOR.md §1.3, §5) and the proposal step p_proposal
(§1.7, §5), with their JSON schemas and validators. The validators return the task's value or raise
``ValueError`` with a message the project's LLM client sends back in a re-ask (``core/llm_client.py``).

Out-of-domain plans (§1.7 "Validation", all [choice]) are handled as follows, and every repair or drop is
recorded in the plan's ``repairs`` list, never silently accepted:

- not JSON / not an object / no ``proposalK`` key / no usable proposal left -> ``ValueError`` -> re-ask;
- ``proposal`` given as a JSON string -> parsed; keys beyond ``n_proposals`` proposals -> dropped;
- an unknown variable key -> dropped (repair); a missing variable -> the proposal is dropped;
- a categorical value with the wrong case -> mapped to the candidate (repair); any other value -> proposal
  dropped;
- a numeric value: a scalar -> degenerate range; ``{"min", "max"}`` -> a range; ``[hi, lo]`` -> reordered;
  a range overlapping the domain -> clipped to it (repair); a range outside the domain or not numbers ->
  proposal dropped;
- ``num`` not a positive integer -> the proposal is dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .variables import VariableSet, _num

COPULA_TEMPLATE = """Information:
Variables:
{data_desc}
Macro-Statistics (marginal frequencies):
{summary}

Task: pick out at most {n_joints} groups of variables that depend on each other in the real world (for example \
a choice that depends on age and gender, or a price that depends on the product).
Rules:
1. Each group has at least 2 variables, named exactly as above.
2. Follow the output format: {{"1": ["var1", "var2"], "2": ["var2", "var3"]}}
3. Output valid JSON only."""

# The paper's p_proposal sections (§5): output format, information (guidance, variables), rules. Here the parts
# that never change come first and the guidance last, so llama.cpp reuses the cached prefix of the previous
# iteration's prompt ([choice]: on a CPU, prompt evaluation is most of a call's time).
PROPOSAL_TEMPLATE = """You simulate realistic {record_noun} records. Each round you write proposals: one category or \
one [min, max] range per variable and a number of records (num) to draw from it, to fill the gaps between the \
synthetic data and the target statistics.
Variables:
{data_desc}

Output Format (JSON):
{{"n_proposals": {n_proposals}, "proposal1": {{"reason": "...", "proposal": {{{example}}}, "num": 10}}, "proposal2": ...}}
Rules:
1. Stay within the guidance: target its largest gaps; do not invent beyond it.
2. In reason, say briefly which guidance cells (with their frequencies) the proposal fills.
3. Values come from the variable descriptions: a categorical value is one exact, case-sensitive candidate \
string; a numeric value is a two-number list [min, max], e.g. a range from the guidance.
4. One category or one range per variable in each proposal; include every variable.
5. Give more samples (num) to larger gaps, and to cells shared by the joint and marginal guidance.
6. Output the JSON only, no comments or markdown.

This round: the synthetic data has {n_current} records; write {n_proposals} proposals whose num add up to \
{n_samples}. The guidance lists the under-represented cells (+gap, target and synthetic frequencies).
Joint Guidance:
{joint_guide}
Marginal Guidance:
{marginal_guide}"""


@dataclass
class Proposal:
    """π: one category or closed range per variable and the number of records to draw from it."""

    values: dict[str, str | tuple[float, float]]
    num: int
    reason: str = ""

    def as_dict(self) -> dict:
        return {
            "values": {k: list(v) if isinstance(v, tuple) else v for k, v in self.values.items()},
            "num": self.num,
            "reason": self.reason,
        }


@dataclass
class Plan:
    proposals: list[Proposal]
    repairs: list[str] = field(default_factory=list)
    dropped: int = 0


class RawProposal(BaseModel):
    """The shape of one ``proposalK`` entry before domain checks."""

    model_config = ConfigDict(extra="ignore")

    reason: str = ""
    proposal: dict[str, Any]
    num: int = Field(gt=0)

    @field_validator("proposal", mode="before")
    @classmethod
    def _parse_string(cls, value: Any) -> Any:
        if isinstance(value, str):  # the paper's skeleton shows "proposal": "..." (§1.7)
            return json.loads(value)
        return value

    @field_validator("reason", mode="before")
    @classmethod
    def _reason_text(cls, value: Any) -> Any:
        return value if isinstance(value, str) else json.dumps(value)


# --------------------------------------------------------------------------- copula
def copula_schema(variables: VariableSet, n_joints: int) -> dict:
    group = {"type": "array", "items": {"type": "string", "enum": variables.names}, "minItems": 2, "maxItems": len(variables.names)}
    return {
        "type": "object",
        "properties": {str(i): group for i in range(1, n_joints + 1)},
        "required": ["1"],
        "additionalProperties": False,
    }


def copula_validator(variables: VariableSet, n_joints: int):
    """Groups: known names (case-insensitive), >= 2 distinct each, in V order, no duplicates, at most n_joints."""
    lookup = {n.lower(): n for n in variables.names}

    def validate(answer: Any) -> list[tuple[str, ...]]:
        if not isinstance(answer, dict):
            raise ValueError('expected a JSON object like {"1": ["var1", "var2"]}')
        groups: list[tuple[str, ...]] = []
        unknown: list[str] = []
        for key in sorted(answer, key=lambda k: (len(str(k)), str(k))):
            names = answer[key]
            if not isinstance(names, list):
                continue
            known = [lookup[str(n).strip().lower()] for n in names if str(n).strip().lower() in lookup]
            unknown += [str(n) for n in names if str(n).strip().lower() not in lookup]
            group = variables.canonical(known)
            if len(group) >= 2 and group not in groups:
                groups.append(group)
        if not groups:
            raise ValueError(
                f"no group of >= 2 known variables (unknown names: {unknown}); use only {variables.names}"
            )
        return groups[:n_joints]

    return validate


def copula_messages(variables: VariableSet, summary: str, n_joints: int, template: str = COPULA_TEMPLATE) -> list[dict]:
    return [{"role": "user", "content": template.format(data_desc=variables.describe(), summary=summary, n_joints=n_joints)}]


# --------------------------------------------------------------------------- proposal
def proposal_schema(variables: VariableSet, n_proposals: int, reason_max_chars: int) -> dict:
    """JSON schema of the plan (grammar-constrained on llama.cpp; ``json_schema`` elsewhere). Categories are an
    enum; numeric ranges are two-number lists (their bounds are checked by the validator, not the grammar)."""
    properties: dict[str, Any] = {}
    for spec in variables.variables:
        if spec.is_categorical:
            properties[spec.name] = {"type": "string", "enum": spec.categories}
        else:
            properties[spec.name] = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
    proposal = {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "maxLength": reason_max_chars},
            "proposal": {"type": "object", "properties": properties, "required": variables.names, "additionalProperties": False},
            "num": {"type": "integer", "minimum": 1},
        },
        "required": ["reason", "proposal", "num"],
        "additionalProperties": False,
    }
    keys = [f"proposal{i}" for i in range(1, n_proposals + 1)]
    return {
        "type": "object",
        "properties": {"n_proposals": {"type": "integer", "minimum": 1, "maximum": n_proposals}, **{k: proposal for k in keys}},
        "required": ["n_proposals", *keys],
        "additionalProperties": False,
    }


def _example_values(variables: VariableSet) -> str:
    parts = []
    for spec in variables.variables:
        if spec.is_categorical:
            parts.append(f'"{spec.name}": "{spec.categories[0]}"')  # type: ignore[index]
        else:
            low, high = spec.range  # type: ignore[misc]
            parts.append(f'"{spec.name}": [{_num(low)}, {_num(low + (high - low) / 4)}]')
    return ", ".join(parts)


def proposal_messages(
    variables: VariableSet,
    marginal_guide: str,
    joint_guide: str,
    n_proposals: int,
    n_samples: int,
    n_current: int = 0,
    record_noun: str = "data",
    template: str = PROPOSAL_TEMPLATE,
) -> list[dict]:
    content = template.format(
        record_noun=record_noun,
        joint_guide=joint_guide,
        marginal_guide=marginal_guide,
        data_desc=variables.describe(),
        n_proposals=n_proposals,
        n_samples=n_samples,
        n_current=n_current,
        example=_example_values(variables),
    )
    return [{"role": "user", "content": content}]


def _numeric_range(value: Any) -> tuple[float, float] | None:
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        if "min" in lowered and "max" in lowered:  # the paper's rule 3 names 'min' and 'max'
            value = [lowered["min"], lowered["max"]]
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value, value]
    if isinstance(value, list | tuple) and len(value) == 2:
        try:
            low, high = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            return None
        if low != low or high != high:  # NaN
            return None
        return (min(low, high), max(low, high))
    return None


def check_proposal(raw: RawProposal, variables: VariableSet, key: str) -> tuple[Proposal | None, list[str]]:
    """Domain checks and repairs of one proposal (see the module docstring); returns (proposal or None, notes)."""
    notes: list[str] = []
    values: dict[str, str | tuple[float, float]] = {}
    extra = sorted(set(raw.proposal) - set(variables.names))
    if extra:
        notes.append(f"{key}: dropped unknown keys {extra}")
    for spec in variables.variables:
        if spec.name not in raw.proposal:
            return None, notes + [f"{key}: dropped, missing variable {spec.name!r}"]
        value = raw.proposal[spec.name]
        if spec.is_categorical:
            if isinstance(value, str) and value in spec.categories:  # type: ignore[operator]
                values[spec.name] = value
                continue
            matches = [c for c in spec.categories if isinstance(value, str) and c.lower() == value.strip().lower()]  # type: ignore[union-attr]
            if len(matches) == 1:
                notes.append(f"{key}: {spec.name} {value!r} mapped to {matches[0]!r}")
                values[spec.name] = matches[0]
                continue
            return None, notes + [f"{key}: dropped, {spec.name}={value!r} is not one of {spec.categories}"]
        span = _numeric_range(value)
        if span is None:
            return None, notes + [f"{key}: dropped, {spec.name}={value!r} is not a [min, max] list of numbers"]
        low, high = spec.range  # type: ignore[misc]
        if span[1] < low or span[0] > high:
            return None, notes + [f"{key}: dropped, {spec.name} range {list(span)} is outside [{_num(low)}, {_num(high)}]"]
        clipped = (max(span[0], low), min(span[1], high))
        if clipped != span:
            notes.append(f"{key}: {spec.name} range {list(span)} clipped to {list(clipped)}")
        values[spec.name] = clipped
    return Proposal(values, raw.num, raw.reason), notes


def plan_validator(variables: VariableSet, n_proposals: int):
    """The proposal task's validator: a :class:`Plan` with >= 1 usable proposal, else ``ValueError`` (re-ask)."""

    def validate(answer: Any) -> Plan:
        if not isinstance(answer, dict):
            raise ValueError('expected a JSON object {"n_proposals": n, "proposal1": {...}, ...}')
        keys = sorted((k for k in answer if re.fullmatch(r"proposal\d+", str(k))), key=lambda k: int(k[8:]))
        if not keys:
            raise ValueError('the JSON has no "proposal1" key')
        plan = Plan([])
        if len(keys) > n_proposals:
            plan.repairs.append(f"kept the first {n_proposals} of {len(keys)} proposals")
            plan.dropped += len(keys) - n_proposals
            keys = keys[:n_proposals]
        errors: list[str] = []
        for key in keys:
            try:
                raw = RawProposal.model_validate(answer[key])
            except Exception as error:  # pydantic.ValidationError, json.JSONDecodeError
                plan.dropped += 1
                note = f"{key}: dropped, {str(error).splitlines()[0][:200]}"
                plan.repairs.append(note)
                errors.append(note)
                continue
            proposal, notes = check_proposal(raw, variables, key)
            plan.repairs += notes
            if proposal is None:
                plan.dropped += 1
                errors.append(notes[-1])
            else:
                plan.proposals.append(proposal)
        if not plan.proposals:
            raise ValueError("no usable proposal: " + "; ".join(errors)[:600])
        return plan

    return validate


def rescale_counts(nums: list[int], total: int) -> list[int]:
    """Counts proportional to ``nums`` summing to ``total`` (largest-remainder rounding, §1.7 rule 7 [choice])."""
    weights = [max(0, n) for n in nums]
    if total <= 0 or not weights:
        return [0] * len(nums)
    s = sum(weights)
    if s == 0:
        weights, s = [1] * len(nums), len(nums)
    exact = [w * total / s for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(nums)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts

"""Sampling from proposals (LLMSYNTHOR.md §1.7 "Sampling"): no rejection, every draw inside its proposal."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .prompts import Proposal, rescale_counts
from .statistics import Statistic
from .variables import VariableSet, empty_records


def sample_proposal(proposal: Proposal, n: int, variables: VariableSet, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` records from one proposal: categoricals fixed to the proposed category; numerics
    ``Uniform(lo, hi)``; integers uniform over the integers in ``[lo, hi]`` ([choice]; a range holding no
    integer gives its rounded midpoint, clipped to the variable's range)."""
    columns = {}
    for spec in variables.variables:
        value = proposal.values[spec.name]
        if spec.is_categorical:
            columns[spec.name] = np.full(n, value, dtype=object)
            continue
        low, high = value  # type: ignore[misc]
        if spec.type == "integer":
            first, last = math.ceil(low), math.floor(high)
            if first > last:
                mid = min(max(round((low + high) / 2), spec.range[0]), spec.range[1])  # type: ignore[index]
                columns[spec.name] = np.full(n, float(mid))
            else:
                columns[spec.name] = rng.integers(first, last + 1, size=n).astype(float)
        else:
            columns[spec.name] = rng.uniform(low, high, size=n) if high > low else np.full(n, float(low))
    return pd.DataFrame(columns)


def sample_batch(
    proposals: list[Proposal], batch_size: int, variables: VariableSet, rng: np.random.Generator
) -> tuple[pd.DataFrame, list[int]]:
    """The batch: ``num`` draws from each proposal, the nums rescaled to ``batch_size`` (largest remainder)."""
    counts = rescale_counts([p.num for p in proposals], batch_size)
    parts = [sample_proposal(p, c, variables, rng) for p, c in zip(proposals, counts, strict=True) if c > 0]
    if not parts:
        return empty_records(variables), counts
    return pd.concat(parts, ignore_index=True), counts


def greedy_proposals(stats: list[Statistic], variables: VariableSet, n_proposals: int) -> list[Proposal]:
    """A rule-based plan from the guidance alone: proposal k takes each variable's k-th largest positive
    marginal cell (cycling), ``num`` ∝ the sum of the gaps it fills. It is the scripted "largest positive gap"
    policy of Theorem 1 (§1.5) and the documented fallback for an iteration whose LLM plan failed
    (``on_failed_plan: greedy``)."""
    ranked: dict[str, list[tuple]] = {}
    for stat in stats:
        if stat.kind != "marginal":
            continue
        delta = stat.discrepancy
        order = [int(i) for i in np.argsort(-delta, kind="stable") if delta[i] > 0] or [int(np.argmax(stat.target))]
        ranked[stat.variables[0]] = [(stat.labels[i][0], float(max(delta[i], 0.0))) for i in order]
    proposals = []
    for k in range(n_proposals):
        values, weight = {}, 0.0
        for spec in variables.variables:
            cells = ranked[spec.name]
            label, gap = cells[k % len(cells)]
            values[spec.name] = label
            weight += gap
        proposals.append(Proposal(values, max(1, round(1000 * weight)), "greedy: largest positive gaps"))
    return proposals

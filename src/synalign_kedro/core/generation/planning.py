"""Call planning: how a method's budget of ``n_samples`` becomes LLM calls, and which label (and which
demonstration batch) each call is for. Labels follow the label frequencies of the real training data."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import pandas as pd

from .config import GenerationConfigError

BATCH_COLUMNS = {"batch_id", "label", "texts", "variance_at_selection"}


def call_sizes(n_samples: int, n_per_call: int) -> list[int]:
    """Samples asked per call: ``n_per_call`` each, the remainder in the last call."""
    full, rest = divmod(n_samples, n_per_call)
    return [n_per_call] * full + ([rest] if rest else [])


def allocate_by_frequency(
    labels: Sequence[str], weights: dict[str, float], n_calls: int, tie_order: Sequence[str] | None = None
) -> list[str]:
    """Label of each call: largest-remainder apportionment of ``n_calls`` to ``weights``, interleaved.

    Equal remainders go to the labels first in ``tie_order`` (default: alphabetical)."""
    if not labels:
        raise GenerationConfigError("no labels to generate for")
    raw = {label: max(float(weights.get(label, 0.0)), 0.0) for label in labels}
    if sum(raw.values()) <= 0:  # no frequencies known: uniform
        raw = dict.fromkeys(labels, 1.0)
    total = sum(raw.values())
    shares = {label: raw[label] / total * n_calls for label in labels}
    counts = {label: int(math.floor(share)) for label, share in shares.items()}
    rank = {label: i for i, label in enumerate(tie_order or sorted(labels))}
    order = sorted(labels, key=lambda label: (-(shares[label] - counts[label]), rank.get(label, len(rank)), label))
    for label in order[: n_calls - sum(counts.values())]:
        counts[label] += 1
    sequence, remaining = [], dict(counts)
    while len(sequence) < n_calls:  # round-robin so a truncated run still covers every label
        for label in labels:
            if remaining[label] > 0:
                sequence.append(label)
                remaining[label] -= 1
    return sequence


def label_weights(real_labels: Sequence[str]) -> dict[str, float]:
    counts = Counter(str(label) for label in real_labels)
    return {label: float(count) for label, count in counts.items()}


def dataset_labels(profile: dict, real_labels: Sequence[str]) -> dict[str, str]:
    """``{label: description}``: the profile's labels, or the unique real labels when it lists none."""
    described = {str(k): str(v or k) for k, v in (profile.get("labels") or {}).items()}
    real = sorted({str(label) for label in real_labels})
    if not described:
        return {label: label for label in real}
    unknown = sorted(set(real) - described.keys())
    if unknown:
        raise GenerationConfigError(f"real_train has labels {unknown} that the dataset profile does not list")
    return {label: described[label] for label in described if label in set(real) or not real}


def plan_demonstration_calls(batches: pd.DataFrame, weights: dict[str, float], n_calls: int) -> list[dict]:
    """One demonstration batch per generation call.

    Calls are shared among labels by their real frequency (labels without a batch get none); within a label
    batches are taken in order of ``variance_at_selection`` (highest first, i.e. exploration order) and
    cycled when the label needs more calls than it has batches.
    """
    missing = BATCH_COLUMNS - set(batches.columns)
    if missing:
        raise GenerationConfigError(f"demonstration_batches lacks column(s) {sorted(missing)}")
    if batches.empty:
        raise GenerationConfigError("demonstration_batches is empty: run the exploration pipeline first")
    by_label: dict[str, list[dict]] = {}
    ordered = batches.assign(_order=range(len(batches))).sort_values(
        ["variance_at_selection", "_order"], ascending=[False, True]
    )
    for row in ordered.to_dict("records"):
        by_label.setdefault(str(row["label"]), []).append(row)
    labels = sorted(by_label)
    sequence = allocate_by_frequency(labels, {label: weights.get(label, 0.0) for label in labels}, n_calls)
    used: Counter = Counter()
    plan = []
    for label in sequence:
        rows = by_label[label]
        plan.append(rows[used[label] % len(rows)])
        used[label] += 1
    return plan

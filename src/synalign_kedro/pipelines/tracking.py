"""The one MLflow-metrics helper: numbers in the shape kedro-mlflow's ``MlflowMetricsHistoryDataset`` saves."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def mlflow_metrics(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: {"value", "step": 0}}`` for every finite number in ``values`` and ``{name: [{"value", "step"},
    ...]}`` for every list of ``(step, value)`` tuples (a metric history). NaN, infinities, bools, strings,
    dicts and other lists are left out: no NaN or placeholder number ever reaches MLflow as a result."""
    metrics: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, list) and value and all(_is_point(item) for item in value):
            history = [{"value": float(v), "step": int(step)} for step, v in value if _is_finite_number(v)]
            if history:
                metrics[name] = history
        elif _is_finite_number(value):
            metrics[name] = {"value": float(value), "step": 0}
    return metrics


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return math.isfinite(float(value))


def _is_point(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and _is_finite_number(item[0])

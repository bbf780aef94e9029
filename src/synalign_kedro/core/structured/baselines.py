"""Baselines on the same inputs (issue 14; [KDD] Table 1 rows IPF and LLM-ICL, plus two classical ones):

- ``independent_marginals``: every variable drawn alone from its target marginal (no dependence at all);
- ``ipf``: iterative proportional fitting (the ``ipfn`` package) of a uniform seed over the full cell space
  (categories x numeric main bins) to every target marginal and joint, then records drawn from the fitted table;
- ``gaussian_copula``: statsmodels' Gaussian copula fitted on the *real records* (normal scores of ranks,
  categories as intervals of their CDF), inverted through the empirical marginals. It sees micro-data, like the
  paper's TVAE/CTGAN/CopulaGAN rows; ``copulas``/SDV are under the Business Source License, so not those.
- ``llm_icl``: the LLM writes records directly from the rendered statistics (the paper's LLM-ICL row).

Numeric values inside a main bin are drawn by the target's sub-bin proportions when known, then uniformly
inside the sub-bin (the finest aggregate available), so every statistics-only method sees the same histogram.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from ipfn import ipfn
from scipy.stats import norm, rankdata
from statsmodels.distributions.copula.api import GaussianCopula

from ..llm_client import ChatTask, LLMUsage
from .statistics import NumericBinning, TargetStatistics, format_label
from .variables import StructuredInputError, VariableSet, empty_records


def _values_in_bins(binning: NumericBinning, bins: np.ndarray, integer: bool, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(len(bins))
    for b in np.unique(bins):
        mask = bins == b
        k = int(mask.sum())
        low, high = binning.edges[b], binning.edges[b + 1]
        if binning.sub_proportions is not None and binning.sub_proportions[b].sum() > 0:
            p = binning.sub_proportions[b] / binning.sub_proportions[b].sum()
            sub = rng.choice(binning.n_sub, size=k, p=p)
            width = (high - low) / binning.n_sub
            out[mask] = low + (sub + rng.uniform(0, 1, size=k)) * width
        else:
            out[mask] = rng.uniform(low, high, size=k)
    return np.round(out) if integer else out


def _records_from_cells(target: TargetStatistics, cells: dict[str, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
    columns = {}
    for spec in target.variables.variables:
        index = cells[spec.name]
        if spec.is_categorical:
            columns[spec.name] = np.asarray(spec.categories, dtype=object)[index]
        else:
            columns[spec.name] = _values_in_bins(target.binnings[spec.name], index, spec.type == "integer", rng)
    return pd.DataFrame(columns)


def independent_marginals(target: TargetStatistics, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cells = {name: rng.choice(len(p), size=n, p=p) for name, p in target.marginals.items()}
    return _records_from_cells(target, cells, rng)


def ipf_table(target: TargetStatistics, convergence_rate: float = 1e-12, max_iteration: int = 2000) -> np.ndarray:
    """The max-entropy table over all cells (axes in V order) matching every marginal and joint (IPF)."""
    names = target.variables.names
    shape = tuple(len(target.axis_labels(n)) for n in names)
    seed = np.full(shape, 1.0 / np.prod(shape))
    aggregates, dimensions = [], []
    for name in names:
        aggregates.append(target.marginals[name].astype(float))
        dimensions.append([names.index(name)])
    for group, table in target.joints.items():
        aggregates.append(table.astype(float))
        dimensions.append([names.index(n) for n in group])
    fitted = ipfn.ipfn(seed, aggregates, dimensions, convergence_rate=convergence_rate, max_iteration=max_iteration, verbose=0).iteration()
    return np.asarray(fitted, dtype=float)


def ipf(target: TargetStatistics, n: int, seed: int = 0, **ipf_args: Any) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = ipf_table(target, **ipf_args)
    flat = table.ravel() / table.sum()
    index = np.unravel_index(rng.choice(flat.size, size=n, p=flat), table.shape)
    cells = dict(zip(target.variables.names, index, strict=True))
    return _records_from_cells(target, cells, rng)


def gaussian_copula(real: pd.DataFrame, variables: VariableSet, n: int, seed: int = 0) -> pd.DataFrame:
    """Gaussian copula on normal scores; categoricals as uniform draws inside their CDF interval (seeded)."""
    if real is None or len(real) < 2:
        raise StructuredInputError("gaussian_copula needs the real records (a table input), not only aggregates")
    rng = np.random.default_rng(seed)
    scores = []
    for spec in variables.variables:
        column = real[spec.name]
        if spec.is_categorical:
            p = column.value_counts(normalize=True).reindex(spec.categories, fill_value=0.0).to_numpy()
            cdf = np.concatenate([[0.0], np.cumsum(p)])
            index = column.map({c: i for i, c in enumerate(spec.categories)}).to_numpy(int)
            u = cdf[index] + rng.uniform(0, 1, len(column)) * p[index]
        else:
            u = rankdata(column.to_numpy(float)) / (len(column) + 1)
        scores.append(norm.ppf(np.clip(u, 1e-6, 1 - 1e-6)))
    corr = np.corrcoef(np.vstack(scores))
    corr = corr + 1e-9 * np.eye(len(corr))  # keep it positive definite
    draws = GaussianCopula(corr=corr, k_dim=len(corr)).rvs(n, random_state=rng)
    columns = {}
    for j, spec in enumerate(variables.variables):
        u = draws[:, j]
        column = real[spec.name]
        if spec.is_categorical:
            p = column.value_counts(normalize=True).reindex(spec.categories, fill_value=0.0).to_numpy()
            index = np.clip(np.searchsorted(np.cumsum(p), u, side="right"), 0, len(p) - 1)
            columns[spec.name] = np.asarray(spec.categories, dtype=object)[index]
        else:
            values = np.quantile(column.to_numpy(float), u)
            columns[spec.name] = np.round(values) if spec.type == "integer" else values
    return pd.DataFrame(columns)


# --------------------------------------------------------------------------- LLM-ICL
ICL_TEMPLATE = """You write realistic {record_noun} records that follow these statistics.
Variables:
{data_desc}
Marginal frequencies:
{marginals}
Joint frequencies (most frequent cells):
{joints}

Write {k} records as JSON: {{"records": [{{{example}}}, ...]}}. Each record has every variable; a categorical \
value is one exact candidate string, a numeric value is one number inside its range. Match the frequencies \
above across the records. Output the JSON only."""


def render_statistics(target: TargetStatistics, top_cells: int = 12) -> tuple[str, str]:
    """All marginal cells and each joint's most frequent cells, as percentages (only aggregates)."""
    marginals = target.summary()
    lines = []
    for group, table in target.joints.items():
        import itertools

        labels = list(itertools.product(*(target.axis_labels(n) for n in group)))
        flat = table.ravel()
        order = np.argsort(-flat, kind="stable")[:top_cells]
        cells = ", ".join(f"({', '.join(format_label(x) for x in labels[i])}) {100 * flat[i]:.1f}%" for i in order)
        lines.append(f"({', '.join(group)}): {cells}")
    return marginals, "\n".join(lines) or "(none)"


def icl_validator(variables: VariableSet):
    lookup = {spec.name: {c.lower(): c for c in spec.categories} for spec in variables.variables if spec.is_categorical}  # type: ignore[union-attr]

    def validate(answer: Any) -> tuple[list[dict], int]:
        records = answer.get("records") if isinstance(answer, dict) else answer
        if not isinstance(records, list) or not records:
            raise ValueError('expected {"records": [ {...}, ... ]} with at least one record')
        good, bad = [], 0
        for record in records:
            row = {}
            if not isinstance(record, dict):
                bad += 1
                continue
            for spec in variables.variables:
                value = record.get(spec.name)
                if spec.is_categorical:
                    value = lookup[spec.name].get(str(value).strip().lower()) if value is not None else None
                else:
                    try:
                        value = float(value)
                    except (TypeError, ValueError):
                        value = None
                    if value is not None and not (spec.range[0] <= value <= spec.range[1]):  # type: ignore[index]
                        value = None
                if value is None:
                    break
                row[spec.name] = value
            else:
                good.append(row)
                continue
            bad += 1
        if not good:
            raise ValueError("no record had every variable with a valid value")
        return good, bad

    return validate


def icl_schema(variables: VariableSet, k: int) -> dict:
    properties = {}
    for spec in variables.variables:
        if spec.is_categorical:
            properties[spec.name] = {"type": "string", "enum": spec.categories}
        else:
            properties[spec.name] = {"type": "number"}
    record = {"type": "object", "properties": properties, "required": variables.names, "additionalProperties": False}
    return {
        "type": "object",
        "properties": {"records": {"type": "array", "items": record, "minItems": 1, "maxItems": k}},
        "required": ["records"],
        "additionalProperties": False,
    }


def llm_icl(client, target: TargetStatistics, n_calls: int, records_per_call: int, record_noun: str = "data", seed_offset: int = 0) -> tuple[pd.DataFrame, dict]:
    """The LLM writes records directly from the statistics (``n_calls`` calls of ``records_per_call``).
    Invalid records are dropped and counted (``invalid_records``) — the paper's LLM-ICL row."""
    variables = target.variables
    marginals, joints = render_statistics(target)
    example = ", ".join(
        f'"{s.name}": "{s.categories[0]}"' if s.is_categorical else f'"{s.name}": {s.range[0]}'  # type: ignore[index]
        for s in variables.variables
    )
    content = ICL_TEMPLATE.format(
        record_noun=record_noun, data_desc=variables.describe(), marginals=marginals, joints=joints, k=records_per_call, example=example
    )
    tasks = [
        ChatTask(f"llm_icl:{i}", [{"role": "user", "content": content}], "records", icl_schema(variables, records_per_call), icl_validator(variables), seed_offset=seed_offset + i)
        for i in range(n_calls)
    ]
    results, usage = client.run(tasks, description="llm_icl")
    rows, invalid, failed = [], 0, 0
    for result in results:
        if result.ok:
            rows += result.value[0]
            invalid += result.value[1]
        else:
            failed += 1
    records = pd.DataFrame(rows, columns=variables.names) if rows else empty_records(variables)
    for spec in variables.variables:
        if not spec.is_categorical:
            records[spec.name] = records[spec.name].astype(float)
    report = {"calls": n_calls, "failed_calls": failed, "valid_records": len(rows), "invalid_records": invalid, "usage": usage.as_dict() if isinstance(usage, LLMUsage) else {}}
    return records, json.loads(json.dumps(report, default=float))

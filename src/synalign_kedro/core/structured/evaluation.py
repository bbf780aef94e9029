"""Evaluation as in the paper (LLMSYNTHOR.md §4.1): per-column Wasserstein-1 (numeric) / TVD (categorical) and
a classifier two-sample gap |acc − 0.5|; joint JSD and gap over variable groups; rule-based rejection rates;
train-on-synthetic-test-on-real (logistic regression, decision tree, random forest) on derived labels.

Written here with scipy / scikit-learn: ``sdmetrics`` would compute some of these, but it depends on
``copulas`` (Business Source License), which the project does not take.

Choices where the paper is silent (§6.15): the C2ST classifier is a depth-5 decision tree on one-hot
categoricals and raw numerics, 5-fold stratified cross-validation on balanced real/synthetic sets; the JSD is in
bits (in [0, 1]) over the target's cells (numeric components on the 6 quantile main bins of the real data);
metrics are computed on all records, before rejection (rates are reported beside them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from .discrepancy import jsd
from .statistics import TargetStatistics
from .variables import VariableSet


def features(records: pd.DataFrame, variables: VariableSet, columns: list[str] | tuple[str, ...] | None = None) -> np.ndarray:
    """One-hot categoricals over their full candidate list (fixed columns) and raw numerics."""
    parts = []
    for name in columns or variables.names:
        spec = variables[name]
        if spec.is_categorical:
            values = records[name].astype(str).to_numpy()
            parts.append(np.stack([values == c for c in spec.categories], axis=1).astype(float))  # type: ignore[union-attr]
        else:
            parts.append(records[name].to_numpy(float)[:, None])
    return np.hstack(parts) if parts else np.zeros((len(records), 0))


def c2st_gap(real: pd.DataFrame, synthetic: pd.DataFrame, variables: VariableSet, columns, seed: int = 0) -> float:
    """|accuracy − 0.5| of a classifier telling real from synthetic on ``columns`` (0 = indistinguishable)."""
    n = min(len(real), len(synthetic))
    if n < 10:
        return float("nan")
    rng = np.random.default_rng(seed)
    a = real.iloc[rng.choice(len(real), n, replace=False)]
    b = synthetic.iloc[rng.choice(len(synthetic), n, replace=False)]
    x = np.vstack([features(a, variables, columns), features(b, variables, columns)])
    y = np.r_[np.zeros(n), np.ones(n)]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    accuracy = cross_val_score(DecisionTreeClassifier(max_depth=5, random_state=seed), x, y, cv=folds).mean()
    return float(abs(accuracy - 0.5))


def column_distance(real: pd.DataFrame, synthetic: pd.DataFrame, variables: VariableSet, name: str) -> float:
    spec = variables[name]
    if len(synthetic) == 0:
        return float("nan")
    if spec.is_categorical:
        p = real[name].astype(str).value_counts(normalize=True).reindex(spec.categories, fill_value=0.0)
        q = synthetic[name].astype(str).value_counts(normalize=True).reindex(spec.categories, fill_value=0.0)
        return float(0.5 * np.abs(p.to_numpy() - q.to_numpy()).sum())
    return float(wasserstein_distance(real[name].to_numpy(float), synthetic[name].to_numpy(float)))


def rejection_rates(records: pd.DataFrame, rules: dict[str, str]) -> dict[str, float]:
    """Percent of records failing each rule (pandas query strings that select the *bad* records) and any rule."""
    if len(records) == 0 or not rules:
        return {"rejection_rate": float("nan") if len(records) == 0 else 0.0}
    failing = np.zeros(len(records), dtype=bool)
    out = {}
    frame = records.reset_index(drop=True)
    for name, query in rules.items():
        mask = np.zeros(len(frame), dtype=bool)
        mask[frame.query(query).index.to_numpy()] = True
        out[f"rej_{name}"] = 100.0 * float(mask.mean())
        failing |= mask
    out["rejection_rate"] = 100.0 * float(failing.mean())
    return out


def _classifiers(seed: int) -> dict:
    return {
        "lr": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "dt": DecisionTreeClassifier(max_depth=6, random_state=seed),
        "rf": RandomForestClassifier(n_estimators=100, max_depth=8, random_state=seed, n_jobs=1),
    }


def tstr(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    variables: VariableSet,
    labels: Callable[[pd.DataFrame], pd.DataFrame],
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy on the real records of LR / DT / RF trained on the synthetic ones, per derived label."""
    if len(synthetic) < 2:
        return {}
    x_train, x_test = features(synthetic, variables), features(real, variables)
    y_train_all, y_test_all = labels(synthetic), labels(real)
    out = {}
    for label in y_test_all.columns:
        y_train, y_test = y_train_all[label].to_numpy(), y_test_all[label].to_numpy()
        for name, model in _classifiers(seed).items():
            if len(np.unique(y_train)) < 2:  # one class only: the constant prediction
                model = DummyClassifier(strategy="most_frequent")
            model.fit(x_train, y_train)
            out[f"tstr_{label}_{name}"] = float((model.predict(x_test) == y_test).mean())
    return out


def evaluate(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    target: TargetStatistics,
    groups: dict[str, tuple[str, ...]],
    rules: dict[str, str] | None = None,
    labels: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    column_names: dict[str, str] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric of §4.1 for one synthetic table against the real one, as a flat dict.

    Columns are named ``<short>_w`` / ``<short>_tvd`` and ``<short>_gap`` (``column_names`` maps a variable to
    its short name, e.g. ``user_age`` -> ``age``), ``jsd_<group>`` / ``gap_<group>``, ``rejection_rate`` (%),
    ``rej_<rule>`` and ``tstr_<label>_<model>``.
    """
    variables = target.variables
    short = column_names or {}
    out: dict[str, float] = {"n_records": float(len(synthetic))}
    for name in variables.names:
        key = short.get(name, name)
        kind = "tvd" if variables[name].is_categorical else "w"
        out[f"{key}_{kind}"] = column_distance(real, synthetic, variables, name)
        out[f"{key}_gap"] = c2st_gap(real, synthetic, variables, [name], seed)
    for group_name, group in groups.items():
        canonical = variables.canonical(group)
        if len(synthetic):
            out[f"jsd_{group_name}"] = jsd(target.proportions(real, canonical), target.proportions(synthetic, canonical))
        else:
            out[f"jsd_{group_name}"] = float("nan")
        out[f"gap_{group_name}"] = c2st_gap(real, synthetic, variables, list(canonical), seed)
    out.update(rejection_rates(synthetic, rules or {}))
    if labels is not None:
        out.update(tstr(real, synthetic, variables, labels, seed))
    return out

"""Target macro-statistics S_target and the aggregation operator Φ (LLMSYNTHOR.md §1.1-§1.3).

- Categorical variables become frequency vectors over their candidate list.
- Numeric variables use the paper's **two-level binning** (§1.2, [ICLR] B.1 / [KDD] A): ``n_main_bins`` main
  bins cut at the *target's* quantiles (fixed once), and, per synthetic state, the main bin with the largest
  positive discrepancy (target − synthetic) is split into ``n_sub_bins`` equal-width sub-bins whose target
  frequencies come from the real records inside it (they sum to the parent bin's frequency).
- Joint tables (contingency tables over a variable group) use the main bins only ([choice] §1.2).

Everything here is an aggregate: proportions over bins and cells. The real table, when there is one, is kept
only to compute the joint tables of groups the copula step asks for (§1.3) and never enters a prompt.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .variables import StructuredInputError, VariableSet, _num, load_variables, validate_records

Interval = tuple[float, float]
CellLabel = str | Interval


# --------------------------------------------------------------------------- numeric binning
@dataclass
class NumericBinning:
    """Main bins (edges from the target's quantiles) and, optionally, the target's sub-bin proportions."""

    edges: np.ndarray  # n_main + 1 increasing edges; values outside are clipped into the end bins (§1.2 choice)
    n_sub: int = 8
    sub_proportions: np.ndarray | None = None  # (n_main, n_sub) target proportions; row b sums to main bin b's

    @property
    def n_main(self) -> int:
        return len(self.edges) - 1

    def main_index(self, values: np.ndarray) -> np.ndarray:
        """Main bin of each value: ``[e_b, e_{b+1})``, the last bin closed; out-of-range values clipped."""
        index = np.searchsorted(self.edges, np.asarray(values, dtype=float), side="right") - 1
        return np.clip(index, 0, self.n_main - 1)

    def sub_index(self, values: np.ndarray, main_bin: int) -> np.ndarray:
        """Equal-width sub-bin (0..n_sub-1) of values inside ``main_bin``; clipped at the ends."""
        low, high = self.edges[main_bin], self.edges[main_bin + 1]
        position = (np.asarray(values, dtype=float) - low) / (high - low) * self.n_sub
        return np.clip(np.floor(position).astype(int), 0, self.n_sub - 1)

    def main_label(self, b: int) -> Interval:
        return (float(self.edges[b]), float(self.edges[b + 1]))

    def sub_label(self, b: int, s: int) -> Interval:
        low, high = self.edges[b], self.edges[b + 1]
        width = (high - low) / self.n_sub
        return (float(low + s * width), float(low + (s + 1) * width))


def quantile_edges(values: np.ndarray, n_main_bins: int) -> np.ndarray:
    """Main-bin edges at the quantiles 0, 1/k, ..., 1 of ``values`` (each bin about the same number of real
    records, §1.2). Repeated edges (ties, integer data) are merged, so there may be fewer than k bins."""
    edges = np.unique(np.quantile(np.asarray(values, dtype=float), np.linspace(0.0, 1.0, n_main_bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0] + 1.0])  # a constant column: one bin of width 1
    return edges


def binning_from_values(values: np.ndarray, n_main_bins: int = 6, n_sub_bins: int = 8) -> NumericBinning:
    """Quantile main bins plus the target's sub-bin proportions in every main bin (computed once; the loop picks
    which single bin to refine per iteration)."""
    values = np.asarray(values, dtype=float)
    binning = NumericBinning(quantile_edges(values, n_main_bins), n_sub_bins)
    main = binning.main_index(values)
    sub = np.zeros((binning.n_main, n_sub_bins))
    for b in range(binning.n_main):
        inside = values[main == b]
        if len(inside):
            sub[b] = np.bincount(binning.sub_index(inside, b), minlength=n_sub_bins) / len(values)
    binning.sub_proportions = sub
    return binning


# --------------------------------------------------------------------------- one statistic
@dataclass
class Statistic:
    """One table of Φ: a marginal or a joint, flattened (C order over its axes), target vs synthetic."""

    kind: str  # "marginal" | "joint"
    variables: tuple[str, ...]
    labels: list[tuple[CellLabel, ...]]  # one tuple per cell, one label per variable
    target: np.ndarray
    synthetic: np.ndarray
    refined_bin: int | None = None  # numeric marginal: the main bin split into sub-bins this iteration

    @property
    def name(self) -> str:
        return self.variables[0] if self.kind == "marginal" else " x ".join(self.variables)

    @property
    def discrepancy(self) -> np.ndarray:
        """Δ = φ_target − φ_synthetic entry-wise, in proportions (§1.5): > 0 under-, < 0 over-represented."""
        return self.target - self.synthetic


def format_label(label: CellLabel) -> str:
    if isinstance(label, tuple):
        return f"[{_num(label[0])}, {_num(label[1])}]"
    return str(label)


# --------------------------------------------------------------------------- the target
@dataclass
class TargetStatistics:
    """S_target: one marginal per variable, joint tables per variable group, numeric binnings."""

    variables: VariableSet
    marginals: dict[str, np.ndarray]  # categorical: per category; numeric: per main bin
    binnings: dict[str, NumericBinning]
    joints: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)  # axes in V order
    n_records: int | None = None
    reference: pd.DataFrame | None = field(default=None, repr=False)  # never serialised, never prompted

    # ------------------------------------------------------------ cells
    def axis_labels(self, name: str) -> list[CellLabel]:
        spec = self.variables[name]
        if spec.is_categorical:
            return list(spec.categories)  # type: ignore[arg-type]
        binning = self.binnings[name]
        return [binning.main_label(b) for b in range(binning.n_main)]

    def cell_index(self, records: pd.DataFrame, name: str) -> np.ndarray:
        """The main-level cell of each record for ``name`` (category index or main bin)."""
        spec = self.variables[name]
        if spec.is_categorical:
            lookup = {c: i for i, c in enumerate(spec.categories)}  # type: ignore[union-attr]
            index = records[name].astype(str).map(lookup)
            if index.isna().any():
                row = int(np.flatnonzero(index.isna().to_numpy())[0])
                raise StructuredInputError(
                    f"records: column {name!r} row {row}: {records[name].iloc[row]!r} is not one of {spec.categories}"
                )
            return index.to_numpy(dtype=int)
        return self.binnings[name].main_index(records[name].to_numpy(dtype=float))

    def proportions(self, records: pd.DataFrame, group: tuple[str, ...]) -> np.ndarray:
        """Φ for one group: the contingency table of proportions (all zero for an empty table, §1.5)."""
        shape = tuple(len(self.axis_labels(n)) for n in group)
        if len(records) == 0:
            return np.zeros(shape)
        flat = np.ravel_multi_index(tuple(self.cell_index(records, n) for n in group), shape)
        return (np.bincount(flat, minlength=int(np.prod(shape))) / len(records)).reshape(shape)

    # ------------------------------------------------------------ Φ with refinement
    def statistics(
        self, records: pd.DataFrame, refine_marginals: bool = True, refined_bins: dict[str, int] | None = None
    ) -> list[Statistic]:
        """All marginals, then all joints, target vs the synthetic ``records``.

        Numeric marginals are refined (§1.2): the main bin with the largest positive discrepancy (the first on
        ties) is replaced by its ``n_sub`` sub-bins; ``refined_bins`` forces the choice (used for replays).
        """
        out: list[Statistic] = []
        for name in self.variables.names:
            synthetic = self.proportions(records, (name,))
            target = self.marginals[name]
            labels: list[tuple[CellLabel, ...]] = [(label,) for label in self.axis_labels(name)]
            binning = self.binnings.get(name)
            refined = None
            if refine_marginals and binning is not None and binning.sub_proportions is not None:
                refined = (
                    refined_bins[name]
                    if refined_bins and name in refined_bins
                    else int(np.argmax(target - synthetic))
                )
                if len(records):
                    values = records[name].to_numpy(dtype=float)
                    inside = values[binning.main_index(values) == refined]
                    sub_synth = np.bincount(binning.sub_index(inside, refined), minlength=binning.n_sub) / len(records)
                else:
                    sub_synth = np.zeros(binning.n_sub)
                sub_labels = [(binning.sub_label(refined, s),) for s in range(binning.n_sub)]
                target = np.concatenate([target[:refined], binning.sub_proportions[refined], target[refined + 1 :]])
                synthetic = np.concatenate([synthetic[:refined], sub_synth, synthetic[refined + 1 :]])
                labels = labels[:refined] + sub_labels + labels[refined + 1 :]
            out.append(Statistic("marginal", (name,), labels, np.asarray(target, float), np.asarray(synthetic, float), refined))
        for group, table in self.joints.items():
            labels = list(itertools.product(*(self.axis_labels(n) for n in group)))
            out.append(Statistic("joint", group, labels, table.ravel(), self.proportions(records, group).ravel()))
        return out

    # ------------------------------------------------------------ copula refinement (§1.3)
    def with_groups(self, groups: list[tuple[str, ...]], keep_given: bool = True) -> tuple[TargetStatistics, dict]:
        """S^C_target: every marginal; the given joints (all when ``keep_given``, else those in C); each group of
        C with its table (given, computed from the reference table, or dropped when neither exists, [KDD]);
        a group that is a superset of a given joint replaces it (the paper's OD → time×OD example)."""
        groups = [self.variables.canonical(g) for g in groups]
        joints = dict(self.joints) if keep_given else {g: t for g, t in self.joints.items() if g in groups}
        report: dict[str, list] = {"computed": [], "dropped": [], "replaced": [], "kept": []}
        for group in groups:
            if len(group) < 2 or group in joints:
                if group in joints:
                    report["kept"].append(list(group))
                continue
            if group in self.joints:
                joints[group] = self.joints[group]
            elif self.reference is not None:
                joints[group] = self.proportions(self.reference, group)
                report["computed"].append(list(group))
            else:
                report["dropped"].append(list(group))
                continue
            for old in list(joints):
                if old != group and set(old) < set(group):
                    del joints[old]
                    report["replaced"].append([list(old), list(group)])
        refined = TargetStatistics(self.variables, self.marginals, self.binnings, joints, self.n_records, self.reference)
        return refined, report

    # ------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        marginals: dict[str, Any] = {}
        for name in self.variables.names:
            spec = self.variables[name]
            if spec.is_categorical:
                marginals[name] = {
                    "proportions": {c: float(p) for c, p in zip(spec.categories, self.marginals[name], strict=True)}  # type: ignore[arg-type]
                }
            else:
                binning = self.binnings[name]
                entry: dict[str, Any] = {"bins": binning.edges.tolist(), "proportions": self.marginals[name].tolist()}
                if binning.sub_proportions is not None:
                    entry["n_sub_bins"] = binning.n_sub
                    entry["sub_proportions"] = binning.sub_proportions.tolist()
                marginals[name] = entry
        return {
            "variables": [v.model_dump(exclude_none=True) for v in self.variables.variables],
            "n_records": self.n_records,
            "marginals": marginals,
            "joints": [{"variables": list(g), "proportions": t.tolist()} for g, t in self.joints.items()],
        }

    def summary(self, digits: int = 1) -> str:
        """The marginals as percentages, one line per variable (the copula prompt's "Macro-Statistics")."""
        lines = []
        for name in self.variables.names:
            cells = ", ".join(
                f"{format_label(label)} {100 * p:.{digits}f}%"
                for label, p in zip(self.axis_labels(name), self.marginals[name], strict=True)
            )
            lines.append(f"{name}: {cells}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- constructors
def target_from_table(
    table: pd.DataFrame,
    variables: VariableSet | list | dict,
    joints: list[list[str]] | None = None,
    n_main_bins: int = 6,
    n_sub_bins: int = 8,
    source: str = "table",
) -> TargetStatistics:
    """S_target computed from real micro-data (how the paper's experiments get theirs, §1.1)."""
    variables = load_variables(variables)
    records = validate_records(table, variables, source)
    binnings = {
        v.name: binning_from_values(records[v.name].to_numpy(), n_main_bins, n_sub_bins)
        for v in variables.variables
        if not v.is_categorical
    }
    target = TargetStatistics(variables, {}, binnings, {}, len(records), records)
    target.marginals = {n: target.proportions(records, (n,)) for n in variables.names}
    for group in joints or []:
        _check_group(group, variables, source)
        canonical = variables.canonical(group)
        target.joints[canonical] = target.proportions(records, canonical)
    return target


def target_from_dict(obj: dict, variables: VariableSet | list | dict | None = None, source: str = "statistics") -> TargetStatistics:
    """S_target from published aggregates (YAML / JSON, see docs/llmsynthor.md): marginals (counts or
    proportions, normalised) with bins for numeric variables, optional target sub-bin proportions (without
    them no refinement is possible), and joint tables over those bins / categories."""
    if not isinstance(obj, dict) or "marginals" not in obj:
        raise StructuredInputError(f"{source}: expected a mapping with `marginals` (and optional `joints`, `variables`)")
    if variables is None:
        if "variables" not in obj:
            raise StructuredInputError(f"{source}: no `variables` given here or in the parameters")
        variables = obj["variables"]
    variables = load_variables(variables, source)
    marginals: dict[str, np.ndarray] = {}
    binnings: dict[str, NumericBinning] = {}
    given = obj["marginals"] or {}
    for spec in variables.variables:
        where = f"{source}: marginals.{spec.name}"
        if spec.name not in given:
            raise StructuredInputError(f"{where}: missing (every variable needs a marginal)")
        entry = given[spec.name]
        if not isinstance(entry, dict) or "proportions" not in entry:
            raise StructuredInputError(f"{where}: expected a mapping with `proportions`")
        values = entry["proportions"]
        if spec.is_categorical:
            if isinstance(values, dict):
                unknown = sorted(set(values) - set(spec.categories))  # type: ignore[arg-type]
                if unknown:
                    raise StructuredInputError(f"{where}: unknown categories {unknown}; expected {spec.categories}")
                values = [values.get(c, 0.0) for c in spec.categories]  # type: ignore[union-attr]
            marginals[spec.name] = _normalised(values, len(spec.categories), where)  # type: ignore[arg-type]
        else:
            edges = np.asarray(entry.get("bins", []), dtype=float)
            if len(edges) < 2 or np.any(np.diff(edges) <= 0):
                raise StructuredInputError(f"{where}.bins: expected >= 2 strictly increasing edges, got {edges.tolist()}")
            low, high = spec.range  # type: ignore[misc]
            if edges[0] < low or edges[-1] > high:
                raise StructuredInputError(f"{where}.bins: edges {edges.tolist()} leave the range [{low}, {high}]")
            marginals[spec.name] = _normalised(values, len(edges) - 1, where)
            binning = NumericBinning(edges, int(entry.get("n_sub_bins", 8)))
            if entry.get("sub_proportions") is not None:
                sub = np.asarray(entry["sub_proportions"], dtype=float)
                if sub.shape != (len(edges) - 1, binning.n_sub) or np.any(sub < 0):
                    raise StructuredInputError(
                        f"{where}.sub_proportions: expected {len(edges) - 1} rows of {binning.n_sub} non-negative numbers"
                    )
                rows = sub.sum(axis=1, keepdims=True)
                # each row rescaled to its parent bin's proportion (counts or proportions are both accepted)
                sub = np.where(rows > 0, sub / np.where(rows > 0, rows, 1) * marginals[spec.name][:, None], 0.0)
                binning.sub_proportions = sub
            binnings[spec.name] = binning
    target = TargetStatistics(variables, marginals, binnings, {}, obj.get("n_records"))
    for index, entry in enumerate(obj.get("joints") or []):
        where = f"{source}: joints[{index}]"
        if not isinstance(entry, dict) or "variables" not in entry or "proportions" not in entry:
            raise StructuredInputError(f"{where}: expected a mapping with `variables` and `proportions`")
        group = list(entry["variables"])
        _check_group(group, variables, where)
        table = np.asarray(entry["proportions"], dtype=float)
        shape = tuple(len(target.axis_labels(n)) for n in group)
        if table.size != int(np.prod(shape)):
            raise StructuredInputError(f"{where}: expected a table of shape {shape} (axes {group}), got {table.shape}")
        table = table.reshape(shape)
        canonical = variables.canonical(group)
        table = np.transpose(table, [group.index(n) for n in canonical])
        target.joints[canonical] = _normalised(table.ravel(), table.size, where).reshape(table.shape)
    return target


def _check_group(group: list[str], variables: VariableSet, where: str) -> None:
    unknown = [n for n in group if n not in variables.names]
    if unknown or len(set(group)) < 2:
        raise StructuredInputError(
            f"{where}: a joint needs >= 2 distinct known variables; got {group} (unknown: {unknown}; known: {variables.names})"
        )


def _normalised(values: Any, length: int, where: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if array.shape != (length,):
        raise StructuredInputError(f"{where}: expected {length} numbers, got {array.size}")
    if np.any(~np.isfinite(array)) or np.any(array < 0) or array.sum() <= 0:
        raise StructuredInputError(f"{where}: expected non-negative counts or proportions with a positive sum")
    return array / array.sum()

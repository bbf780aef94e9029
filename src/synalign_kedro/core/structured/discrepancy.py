"""The signed discrepancy Δ = S_target − Φ(D) (LLMSYNTHOR.md §1.5), its rendering as guidance text (§1.6),
and the per-iteration distances of the trace (TVD / Wasserstein / JSD against the target)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from .statistics import Statistic, TargetStatistics, format_label


def render_statistic(stat: Statistic, top_k: int, show_values: bool = True, digits: int = 1) -> str:
    """One guidance line: the positive cells of Δ, largest first, at most ``top_k`` (§1.6 [choice]).

    Only positive entries are sent: records can only be added, and the appendix says "signals always correspond
    to underrepresented regions" (§1.5, §6.2). Numeric cells are closed ranges the LLM can copy into a proposal;
    ``(target a%, synthetic b%)`` follows each cell because prompt rule 2 asks the LLM to cite frequencies.
    """
    delta = stat.discrepancy
    order = [int(i) for i in np.argsort(-delta, kind="stable") if delta[i] > 0][:top_k]
    head = stat.variables[0] if stat.kind == "marginal" else f"({', '.join(stat.variables)})"
    if not order:
        return f"{head}: aligned (no under-represented cell)"
    cells = []
    for i in order:
        labels = stat.labels[i]
        text = format_label(labels[0]) if stat.kind == "marginal" else f"({', '.join(format_label(x) for x in labels)})"
        cell = f"{text} +{100 * delta[i]:.{digits}f}%"
        if show_values:
            cell += f" (target {100 * stat.target[i]:.{digits}f}%, synthetic {100 * stat.synthetic[i]:.{digits}f}%)"
        cells.append(cell)
    return f"{head}: " + ", ".join(cells)


def render_guidance(
    stats: list[Statistic], top_k_marginal: int = 5, top_k_joint: int = 10, show_values: bool = True, digits: int = 1
) -> tuple[str, str]:
    """(marginal guidance, joint guidance) texts, one line per statistic."""
    marginal = "\n".join(render_statistic(s, top_k_marginal, show_values, digits) for s in stats if s.kind == "marginal")
    joint = "\n".join(render_statistic(s, top_k_joint, show_values, digits) for s in stats if s.kind == "joint")
    return marginal, joint or "(no joint tables)"


def l1_discrepancy(stats: list[Statistic]) -> float:
    """Mean over statistics of Σ|Δ| / 2 (the TVD of each table): the loop's scalar discrepancy."""
    return float(np.mean([0.5 * np.abs(s.discrepancy).sum() for s in stats]))


def positive_mass(stats: list[Statistic]) -> float:
    """Mean over statistics of Σ max(Δ, 0): the under-represented mass the guidance shows."""
    return float(np.mean([np.clip(s.discrepancy, 0, None).sum() for s in stats]))


def jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence in bits (in [0, 1]): the square of scipy's JS distance ([choice] §6.15)."""
    p, q = np.asarray(p, float).ravel(), np.asarray(q, float).ravel()
    if p.sum() <= 0 or q.sum() <= 0:
        return 1.0
    return float(jensenshannon(p, q, base=2) ** 2)


def target_wasserstein(target: TargetStatistics, name: str, values: np.ndarray) -> float:
    """W1 between synthetic values and the target's finest histogram (sub-bins when known, else main bins),
    each cell represented by its midpoint: the trace's Wasserstein when only aggregates are known."""
    if len(values) == 0:
        return float("nan")
    binning = target.binnings[name]
    if binning.sub_proportions is not None:
        centres = [np.mean(binning.sub_label(b, s)) for b in range(binning.n_main) for s in range(binning.n_sub)]
        weights = binning.sub_proportions.ravel()
    else:
        centres = [np.mean(binning.main_label(b)) for b in range(binning.n_main)]
        weights = target.marginals[name]
    return float(wasserstein_distance(values, centres, v_weights=weights))


def trace_row(target: TargetStatistics, records, stats_main: list[Statistic]) -> dict[str, float]:
    """Distances of the current records to the target: per-variable TVD (main bins) and W1 (numeric), per-joint
    JSD, and their means."""
    row: dict[str, float] = {}
    tvds, jsds, ws = [], [], []
    for stat in stats_main:
        if stat.kind == "marginal":
            value = 0.5 * float(np.abs(stat.discrepancy).sum())
            row[f"tvd.{stat.name}"] = value
            tvds.append(value)
            if not target.variables[stat.name].is_categorical:
                w = target_wasserstein(target, stat.name, records[stat.name].to_numpy(dtype=float))
                row[f"wasserstein.{stat.name}"] = w
                ws.append(w)
        else:
            value = jsd(stat.target, stat.synthetic)
            row[f"jsd.{'__'.join(stat.variables)}"] = value
            jsds.append(value)
    row["tvd_mean"] = float(np.mean(tvds)) if tvds else float("nan")
    row["jsd_mean"] = float(np.mean(jsds)) if jsds else float("nan")
    row["wasserstein_mean"] = float(np.mean(ws)) if ws else float("nan")
    return row

"""One self-contained HTML report of a structured-records run (LLMSynthor and its baselines; issue 16).

It opens with the answer (:func:`answer_lines`): do the records of each method match the target statistics, and
is LLMSynthor better than the baselines? Every method's records are measured against the *same* target
statistics (``structured_target_statistics``: every marginal on the target's cells, numeric variables on their
quantile main bins, and the given joint tables) with the loop's own scalar, :func:`.discrepancy.l1_discrepancy`
(the mean over tables of the TVD, in [0, 1], 0 = identical proportions), next to the same discrepancy of as many
records drawn from the target itself (the sampling noise: what a perfect generator of that size would show).
Then the convergence plot (:func:`.run.convergence_figure` of the trace), the per-column comparison panels (target
vs every method that produced records, one small bar chart per variable), and the details (the distances table,
the evaluation table, LLMSynthor's report and last trace row, the baselines' reports).

Every input is handed in by the caller (the report node takes them as catalog inputs); figures are drawn here
and inlined as base64 PNG data URIs; this module reads no file. No Kedro import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..plots import figure_png  # noqa: E402
from ..report import (  # noqa: E402
    NOT_AVAILABLE,
    REPORT_STYLE,
    esc,
    fmt,
    frame_html,
    image_html,
    key_value_table,
    not_available_html,
)
from .discrepancy import jsd, l1_discrepancy  # noqa: E402
from .run import convergence_figure  # noqa: E402
from .statistics import TargetStatistics, format_label, target_from_dict  # noqa: E402

MAIN_METHOD = "llmsynthor"
# Draws of the sampling-noise reference (records drawn from the target itself); seeded, so the page is stable.
NOISE_DRAWS = 200
NOISE_SEED = 0
# Bar colours: the target first, then the methods in the order given.
_TARGET_COLOUR = "#222222"
_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:cyan")

# the run report's style, plus a grid for the per-column panels
_STYLE = REPORT_STYLE + """
.panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: .6rem; }
"""


# --------------------------------------------------------------------------- distances to the target
def method_distances(
    target: TargetStatistics | Mapping,
    records: Mapping[str, pd.DataFrame | None],
    notes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per method, best first (lowest ``discrepancy``; methods without records last): ``method,
    n_records, discrepancy`` (mean TVD over every marginal and joint table, the trace's ``discrepancy_l1``
    scalar), ``tvd_mean`` (marginals), ``jsd_mean`` (joints, bits), ``noise_discrepancy`` (the mean discrepancy
    of ``n_records`` records drawn from the target itself), ``note`` (why a method has no numbers: ``notes``'
    entry, e.g. a baseline's "skipped" reason, or "no records")."""
    target = _target(target)
    rows = []
    for method, table in records.items():
        row = {"method": method, "n_records": 0 if table is None else len(table), "discrepancy": math.nan,
               "tvd_mean": math.nan, "jsd_mean": math.nan, "noise_discrepancy": math.nan, "note": ""}
        if table is None or len(table) == 0:
            rows.append(row | {"note": (notes or {}).get(method) or "no records"})
            continue
        try:
            stats = target.statistics(table, refine_marginals=False)
        except (ValueError, KeyError) as error:  # a column or value the target does not know
            rows.append(row | {"note": f"records unreadable: {error}"})
            continue
        marginals = [0.5 * float(np.abs(s.discrepancy).sum()) for s in stats if s.kind == "marginal"]
        joints = [jsd(s.target, s.synthetic) for s in stats if s.kind == "joint"]
        rows.append(
            row
            | {
                "discrepancy": l1_discrepancy(stats),
                "tvd_mean": float(np.mean(marginals)) if marginals else math.nan,
                "jsd_mean": float(np.mean(joints)) if joints else math.nan,
                "noise_discrepancy": sampling_noise(target, len(table)),
            }
        )
    columns = ["method", "n_records", "discrepancy", "tvd_mean", "jsd_mean", "noise_discrepancy", "note"]
    frame = pd.DataFrame(rows, columns=columns)
    order = frame["discrepancy"].fillna(math.inf).to_numpy().argsort(kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def sampling_noise(target: TargetStatistics, n: int, draws: int = NOISE_DRAWS, seed: int = NOISE_SEED) -> float:
    """Expected :func:`.discrepancy.l1_discrepancy` of ``n`` records drawn from the target itself: per table,
    the mean TVD of ``draws`` multinomial samples of size ``n`` (the expectation of a mean of tables is the mean
    of their expectations, so the tables can be drawn independently)."""
    if n <= 0:
        return math.nan
    rng = np.random.default_rng(seed)
    tables = [np.asarray(p, float).ravel() for p in target.marginals.values()]
    tables += [np.asarray(t, float).ravel() for t in target.joints.values()]
    tvds = []
    for p in tables:
        p = p / p.sum()
        sample = rng.multinomial(n, p, size=draws) / n
        tvds.append(float(np.mean(0.5 * np.abs(sample - p).sum(axis=1))))
    return float(np.mean(tvds))


# --------------------------------------------------------------------------- the answer
def answer_lines(distances: pd.DataFrame, main: str = MAIN_METHOD) -> list[str]:
    """The answer in plain sentences: first whether ``main`` (LLMSynthor) beats the baselines, then one sentence
    per method, best first (``distances`` from :func:`method_distances`)."""
    if distances is None or len(distances) == 0:
        return []
    measured = distances[distances["discrepancy"].notna()]
    lines = []
    if main in set(measured["method"]):
        row = measured.set_index("method").loc[main]
        others = measured[measured["method"] != main]
        better = others.loc[others["discrepancy"] > row["discrepancy"], "method"].tolist()
        worse = others.loc[others["discrepancy"] <= row["discrepancy"], "method"].tolist()
        rank = 1 + len(worse)
        head = f"{main} ranks {rank} of {len(measured)} methods by discrepancy to the target statistics"
        if not len(others):
            head += " (no baseline produced records to compare with)"
        elif not worse:
            head += f": lower than every baseline ({', '.join(better)})"
        else:
            head += f": lower than {', '.join(better) or 'no baseline'}; not lower than {', '.join(worse)}"
        lines.append(head + f"; best: {measured.iloc[0]['method']}.")
    elif main in set(distances["method"]):
        note = distances.set_index("method").loc[main, "note"]
        lines.append(f"{main} has no discrepancy to report ({note}), so no answer on whether it beats the baselines.")
    for _, row in distances.iterrows():
        lines.append(_method_sentence(row))
    return lines


def _method_sentence(row: pd.Series) -> str:
    method = row["method"]
    if not math.isfinite(row["discrepancy"]):
        return f"{method}: not compared ({row['note'] or NOT_AVAILABLE})."
    noise = row["noise_discrepancy"]
    ratio = row["discrepancy"] / noise if noise > 0 else math.nan
    sentence = (
        f"{method}: discrepancy {fmt(row['discrepancy'])} over {int(row['n_records'])} records "
        f"(marginal TVD {fmt(row['tvd_mean'])}"
        + (f", joint JSD {fmt(row['jsd_mean'])} bits" if math.isfinite(row["jsd_mean"]) else "")
        + f"); {int(row['n_records'])} records drawn from the target itself would show about {fmt(noise)}"
    )
    if math.isfinite(ratio):
        sentence += f", so {ratio:.1f}x the sampling noise"
    return sentence + "."


# --------------------------------------------------------------------------- per-column panels
def column_proportions(
    target: TargetStatistics | Mapping, records: Mapping[str, pd.DataFrame | None], name: str
) -> pd.DataFrame:
    """Target and each method's proportions on ``name``'s cells (categories, or the numeric main bins): one
    row per cell (index: the cell label), columns ``target`` and every method whose records can be read."""
    target = _target(target)
    labels = [format_label(label) for label in target.axis_labels(name)]
    columns = {"target": np.asarray(target.marginals[name], float)}
    for method, table in records.items():
        if table is None or len(table) == 0 or name not in table.columns:
            continue
        try:
            columns[method] = target.proportions(table, (name,))
        except (ValueError, KeyError):
            continue
    return pd.DataFrame(columns, index=pd.Index(labels, name=name))


def column_comparison_figure(proportions: pd.DataFrame, title: str | None = None) -> plt.Figure:
    """One small panel: grouped bars, the target (black) then each method, per cell of one variable."""
    cells, series = len(proportions), list(proportions.columns)
    width = 0.8 / max(len(series), 1)
    figure, axis = plt.subplots(figsize=(5.2, 3.1))
    x = np.arange(cells)
    for i, column in enumerate(series):
        colour = _TARGET_COLOUR if column == "target" else _COLOURS[(i - 1) % len(_COLOURS)]
        axis.bar(x + (i - (len(series) - 1) / 2) * width, proportions[column].to_numpy(), width, label=column,
                 color=colour, alpha=0.9 if column == "target" else 0.75)
    axis.set_xticks(x)
    long = max((len(str(label)) for label in proportions.index), default=0) > 8
    axis.set_xticklabels([str(label) for label in proportions.index], rotation=30 if long else 0,
                         ha="right" if long else "center", fontsize=7)
    axis.set_ylabel("proportion", fontsize=8)
    axis.set_title(title or str(proportions.index.name), fontsize=9)
    axis.tick_params(axis="y", labelsize=7)
    axis.grid(axis="y", alpha=0.3)
    top = float(np.nanmax(proportions.to_numpy())) if proportions.size else 0.0
    axis.set_ylim(0, (top if top > 0 else 1.0) * 1.4)  # headroom: the legend sits above the bars
    axis.legend(fontsize=6, ncol=min(len(series), 3), loc="upper center")
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------- the page
def render_structured_report(
    title: str,
    target_statistics: TargetStatistics | Mapping,
    records: Mapping[str, pd.DataFrame | None],
    trace: pd.DataFrame | None = None,
    synthor_report: Mapping | None = None,
    baseline_reports: Mapping[str, Mapping | None] | None = None,
    evaluation: pd.DataFrame | None = None,
    run_info: Mapping[str, object] | None = None,
    main: str = MAIN_METHOD,
) -> str:
    """The HTML page, the answer first. ``records``: method -> its records (LLMSynthor and every baseline; an
    empty or None table is a method that did not run). ``target_statistics``: the ``structured_target_statistics``
    dict (or the object). Every other argument may be None ("not available")."""
    target = _target(target_statistics)
    skipped = {m: f"skipped: {r['skipped']}" for m, r in (baseline_reports or {}).items() if r and r.get("skipped")}
    distances = method_distances(target, records, skipped)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<h2>Answer</h2>",
        _answer_html(distances, target, main),
        key_value_table(run_info or {}),
        "<h2>Convergence</h2>",
        _convergence_html(trace),
        "<h2>Per-column comparison: target vs synthetic</h2>",
        _columns_html(target, records),
        "<h2>Details</h2>",
        "<h3>Distances to the target statistics</h3>",
        frame_html(distances),
        "<h3>Evaluation (structured_evaluation)</h3>",
        frame_html(evaluation),
        f"<h3>{esc(main)} report</h3>",
        key_value_table(synthor_report or {}),
        "<h3>Last trace row</h3>",
        frame_html(trace.tail(1) if trace is not None and len(trace) else None),
        "<h3>Baseline reports</h3>",
        _baselines_html(baseline_reports),
        "</body></html>",
    ]
    return "\n".join(parts)


def _answer_html(distances: pd.DataFrame, target: TargetStatistics, main: str) -> str:
    lines = answer_lines(distances, main)
    if not lines:
        return not_available_html()
    n_tables = len(target.marginals) + len(target.joints)
    intro = (
        f"Do the records match the target statistics, and does {main} do better than the baselines? Each method's "
        f"discrepancy: the mean over the target's {len(target.marginals)} marginals and {len(target.joints)} joint "
        f"tables ({n_tables} in all; numeric variables on their quantile main bins) of the total variation distance "
        "between the target's and the records' proportions (0 = identical, 1 = disjoint; lower is better), next to "
        "the same discrepancy of as many records drawn from the target itself (the sampling noise, a floor). "
        "Best first; the details follow."
    )
    head, *rest = lines
    items = "".join(f"<li>{esc(line)}</li>" for line in rest)
    return f"<p>{esc(intro)}</p><p><strong>{esc(head)}</strong></p><ul class=\"answer\">{items}</ul>"


def _convergence_html(trace: pd.DataFrame | None) -> str:
    if trace is None or len(trace) == 0:
        return f'<p class="na">{NOT_AVAILABLE} (no trace)</p>'
    caption = "LLMSynthor by iteration: marginal TVD, joint JSD and W1 to the target (its own trace)"
    return image_html(figure_png(convergence_figure(trace)), caption)


def _columns_html(target: TargetStatistics, records: Mapping[str, pd.DataFrame | None]) -> str:
    panels = []
    for name in target.variables.names:
        proportions = column_proportions(target, records, name)
        kind = "categories" if target.variables[name].is_categorical else "target quantile bins"
        panels.append(image_html(figure_png(column_comparison_figure(proportions, name)), f"{name} ({kind})", name))
    return f'<div class="panels">{"".join(panels)}</div>'


def _baselines_html(reports: Mapping[str, Mapping | None] | None) -> str:
    if not reports:
        return not_available_html()
    rows = []
    for method, values in reports.items():
        flat = {k: v for k, v in (values or {}).items() if not isinstance(v, dict | list)}
        rows.append({"method": method, **(flat or {"report": "(empty)"})})
    return frame_html(pd.DataFrame(rows))


def _target(target: TargetStatistics | Mapping) -> TargetStatistics:
    return target if isinstance(target, TargetStatistics) else target_from_dict(dict(target), None, "structured_target_statistics")

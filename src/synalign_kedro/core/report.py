"""One self-contained HTML report of a run (every image inlined as base64, no external file or script).

It opens with the answer (:func:`answer_lines`, also logged at the end of ``kedro run`` by
``hooks.RunSummaryHook``): per synthetic variant, did it help (accuracy and macro-F1 minus gold's, real data
alone, paired seed by seed with a Student-t interval, :func:`.fewshot.mean_interval`) and is it close to the
real data (its distances to the held-out real rows next to gold's). Then the details: the evaluation table (SynAlign sec. 4.3-4.4, tables 1-3), GP-vs-random coverage curves (sec. 3.2),
t-SNE and other figures, the alignment weights histogram (sec. 3.4), the privacy summary, the offline A/B
estimate (sec. 4.6), LLM accounting, and synthetic examples per label next to real ones. Every table and
figure is handed in by the caller (the report node takes them as catalog inputs, figures as PNG bytes drawn
by :mod:`.plots`); this module reads no file. A section whose input is None says "not available".

Plain string templating with ``html.escape`` (no template engine needed for one fixed page). No Kedro import.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .fewshot import mean_interval
from .variants import GOLD

logger = logging.getLogger(__name__)

NOT_AVAILABLE = "not available"
# The confidence level of the answer's intervals (mean_interval's default; ab_export.report has no key for it).
ANSWER_CONFIDENCE = 0.95
# (evaluation table column, name in the answer): the downstream scores compared with gold's, seed by seed.
ANSWER_SCORES = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))
# (column, name): the distances to the real data, shown next to gold's (lower is closer).
ANSWER_DISTANCES = (("mmd", "MMD²"), ("wasserstein", "W1"))
PER_SEED_SUFFIX = "_per_seed"

# The one style of the project's HTML reports (the run report, the structured-records report).
REPORT_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; line-height: 1.4; padding: 0 1rem; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f1f1f1; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #ddd; margin: .4rem 0; }
.na { color: #999; font-style: italic; }
.meta td:first-child { font-weight: 600; }
figure { margin: 1rem 0; } figcaption { font-size: .85rem; color: #555; }
"""


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def examples_by_label(
    real: pd.DataFrame, synthetic: pd.DataFrame, per_label: int = 3, seed: int = 0
) -> pd.DataFrame:
    """``per_label`` random real and synthetic texts per label, side by side (``label, real_text,
    synthetic_text``; a side with fewer rows is padded with empty strings)."""
    rows = []
    labels = sorted(set(real["label"].astype(str)) | set(synthetic["label"].astype(str)))
    for label in labels:
        picked = []
        for frame in (real, synthetic):
            texts = frame.loc[frame["label"].astype(str) == label, "text"].astype(str)
            picked.append(texts.sample(n=min(per_label, len(texts)), random_state=seed).tolist())
        for i in range(max(len(picked[0]), len(picked[1]))):
            rows.append(
                {
                    "label": label,
                    "real_text": picked[0][i] if i < len(picked[0]) else "",
                    "synthetic_text": picked[1][i] if i < len(picked[1]) else "",
                }
            )
    return pd.DataFrame(rows, columns=["label", "real_text", "synthetic_text"])


def render_run_report(
    title: str,
    run_info: Mapping[str, object],
    evaluation_table: pd.DataFrame | None = None,
    coverage_png: bytes | None = None,
    figures: Mapping[str, bytes | None] | None = None,
    weights_png: bytes | None = None,
    privacy_summary: Mapping | None = None,
    flagged_rows: pd.DataFrame | None = None,
    ab_estimate: Mapping | None = None,
    llm_usage: Mapping[str, Mapping | None] | None = None,
    examples: pd.DataFrame | None = None,
    max_flagged_rows: int = 20,
    confidence: float = ANSWER_CONFIDENCE,
) -> str:
    """The HTML page, the answer first. Every argument but ``title`` and ``run_info`` may be None ("not
    available")."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{REPORT_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<h2>Answer</h2>",
        _answer_html(evaluation_table, confidence),
        key_value_table(run_info, css_class="meta"),
        "<h2>Evaluation</h2>",
        _distance_reference_html(evaluation_table),
        frame_html(evaluation_table),
        "<h2>Coverage curves</h2>",
        image_html(coverage_png, "GP uncertainty sampling vs random: coverage of the real data"),
    ]
    parts.append("<h2>Figures (t-SNE, ...)</h2>")
    if figures:
        for caption, png in figures.items():
            parts.append(image_html(png, caption))
    else:
        parts.append(not_available_html())
    parts += [
        "<h2>Alignment weights</h2>",
        image_html(weights_png, "Histogram of the learnt MMD alignment weights"),
    ]
    parts.append("<h2>Privacy</h2>")
    if privacy_summary:
        parts.append(_privacy_html(privacy_summary))
        if flagged_rows is not None and len(flagged_rows):
            shown = flagged_rows.head(max_flagged_rows)
            parts.append(f"<p>Flagged rows (first {len(shown)} of {len(flagged_rows)}):</p>")
            parts.append(frame_html(shown))
    else:
        parts.append(not_available_html())
    parts.append("<h2>Offline A/B estimate</h2>")
    parts.append(_ab_html(ab_estimate) if ab_estimate else not_available_html())
    parts.append("<h2>LLM accounting</h2>")
    parts.append(_llm_usage_html(llm_usage))
    parts.append("<h2>Examples per label: real vs synthetic</h2>")
    parts.append(frame_html(examples))
    parts.append("</body></html>")
    return "\n".join(parts)


def score_differences(
    evaluation_table: pd.DataFrame, confidence: float = ANSWER_CONFIDENCE, baseline: str = GOLD
) -> pd.DataFrame:
    """Per synthetic variant (every row but ``baseline``'s) and score (:data:`ANSWER_SCORES`): the score minus
    the baseline's, as the mean of the per-seed differences (the ``<score>_per_seed`` columns, seed i of a
    variant paired with seed i of the baseline: the same real bootstrap) with :func:`.fewshot.mean_interval`'s
    Student-t interval. Columns ``variant, score, difference, ci_low, ci_high, n_seeds, note``; ``note`` says
    why an interval is missing (NaN bounds): no per-seed scores (then ``difference`` is the difference of the
    means), one seed, seed counts that do not pair, no seed evaluated, no baseline row."""
    rows = []
    table = evaluation_table.reset_index(drop=True)
    variants = table["variant"].astype(str)
    base = table[variants == baseline]
    base_row = base.iloc[0] if len(base) else None
    for _, row in table[variants != baseline].iterrows():
        for column, _name in ANSWER_SCORES:
            rows.append(
                {
                    "variant": str(row["variant"]),
                    "score": column,
                    **_difference(row, base_row, column, confidence),
                }
            )
    columns = ["variant", "score", "difference", "ci_low", "ci_high", "n_seeds", "note"]
    return pd.DataFrame(rows, columns=columns)


def _difference(row: pd.Series, base: pd.Series | None, column: str, confidence: float) -> dict:
    out = {"difference": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n_seeds": 0, "note": ""}
    seeds = _per_seed(row.get(column + PER_SEED_SUFFIX))
    mean_score = _number(row.get(column))
    if (seeds is not None and not seeds) or (seeds is None and not math.isfinite(mean_score)):
        return out | {"note": "no seed evaluated"}
    if base is None:
        return out | {"note": f"no {GOLD} row to compare with"}
    base_seeds = _per_seed(base.get(column + PER_SEED_SUFFIX))
    if seeds is None or base_seeds is None:
        difference = mean_score - _number(base.get(column))
        why = "no interval: the evaluation table has only the mean over seeds, no per-seed scores to pair"
        return out | {"difference": difference, "n_seeds": _count(row.get("n_seeds")), "note": why}
    if len(seeds) != len(base_seeds):
        difference = float(np.mean(seeds)) - float(np.mean(base_seeds)) if base_seeds else math.nan
        why = f"no interval: {len(seeds)} seeds against {GOLD}'s {len(base_seeds)}, which do not pair"
        return out | {"difference": difference, "n_seeds": len(seeds), "note": why}
    mean, half = mean_interval(np.asarray(seeds) - np.asarray(base_seeds), confidence)
    note = "" if math.isfinite(half) else "no interval: one seed"
    return out | {
        "difference": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "n_seeds": len(seeds),
        "note": note,
    }


def answer_lines(
    evaluation_table: pd.DataFrame | None, confidence: float = ANSWER_CONFIDENCE, baseline: str = GOLD
) -> list[str]:
    """The answer in plain sentences, one per synthetic variant, best accuracy difference first: did it help
    (:func:`score_differences`) and is it close to the real data (its distances next to the baseline's).
    Empty when there is no table or no ``variant`` column."""
    if evaluation_table is None or len(evaluation_table) == 0 or "variant" not in evaluation_table.columns:
        return []
    differences = score_differences(evaluation_table, confidence, baseline)
    if differences.empty:
        return [f"only {baseline} was evaluated: no synthetic variant to compare with real data alone"]
    by_variant = {
        variant: group.set_index("score") for variant, group in differences.groupby("variant", sort=False)
    }
    order = sorted(
        by_variant,
        key=lambda variant: (
            -by_variant[variant].loc["accuracy", "difference"]
            if math.isfinite(by_variant[variant].loc["accuracy", "difference"])
            else math.inf
        ),
    )
    table = evaluation_table.set_index(evaluation_table["variant"].astype(str))
    table = table[~table.index.duplicated()]
    return [_answer_line(variant, by_variant[variant], table, confidence, baseline) for variant in order]


def _answer_line(
    variant: str, scores: pd.DataFrame, table: pd.DataFrame, confidence: float, baseline: str
) -> str:
    accuracy = scores.loc["accuracy"]
    if accuracy["note"] == "no seed evaluated":
        helped = f"{variant}: no downstream score (no seed evaluated), so no answer on whether it helped"
    else:
        against = f" vs real alone ({baseline})"
        parts = [
            _score_sentence(name, scores.loc[column], against if i == 0 else "")
            for i, (column, name) in enumerate(ANSWER_SCORES)
        ]
        if math.isfinite(accuracy["ci_low"]):
            why = f" ({int(accuracy['n_seeds'])} paired seeds, {_percent(confidence)} interval"
            if accuracy["ci_low"] == accuracy["ci_high"]:
                why += "; every seed gave the same difference (no resampling?), so it has no width"
            why += ")"
        else:
            why = f"; {accuracy['note'] or 'no interval'}"
        helped = f"{variant}: " + "; ".join(parts) + why
    return helped + ". " + _closeness_sentence(variant, table, baseline)


def _score_sentence(name: str, score: pd.Series, against: str) -> str:
    """``+0.0310 accuracy [-0.0100, +0.0700] vs real alone (gold): not significant``; without an interval
    ``+0.0310 accuracy vs real alone (gold)``."""
    difference = f"{_signed(score['difference'])} {name}"
    if not math.isfinite(score["ci_low"]):
        return difference + against
    low, high = score["ci_low"], score["ci_high"]
    verdict = "better" if low > 0 else "worse" if high < 0 else "not significant"
    return f"{difference} [{_signed(low)}, {_signed(high)}]{against}: {verdict}"


def _closeness_sentence(variant: str, table: pd.DataFrame, baseline: str) -> str:
    present = [(column, name) for column, name in ANSWER_DISTANCES if column in table.columns]
    if not present:
        return "No distance to the real data in the evaluation table."
    row = table.loc[variant]
    base = table.loc[baseline] if baseline in table.index else None
    reference = (
        str(row.get("distribution_reference") or "").strip() if "distribution_reference" in table else ""
    )
    reference = reference if reference and reference != "nan" else "the real data"
    shown = [
        f"{name} {_plain(row.get(column))}"
        + (f" ({baseline} {_plain(base.get(column))})" if base is not None else "")
        for column, name in present
    ]
    return f"Distance to {reference} (lower is closer): " + ", ".join(shown) + "."


def _per_seed(value: object) -> list[float] | None:
    """Per-seed scores from a table cell (a list, or the JSON text the evaluation table stores); None when the
    cell is missing or unreadable."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, list | tuple | np.ndarray):
        return None
    values = [_number(item) for item in value]
    return [item for item in values if math.isfinite(item)]


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _count(value: object) -> int:
    number = _number(value)
    return int(number) if math.isfinite(number) else 0


def _plain(value: object) -> str:
    number = _number(value)
    return fmt(number) if math.isfinite(number) else "n/a"


def _signed(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.4f}"


def _answer_html(evaluation_table: pd.DataFrame | None, confidence: float) -> str:
    lines = answer_lines(evaluation_table, confidence)
    if not lines:
        return not_available_html()
    intro = (
        f"Did the synthetic data help? Accuracy and macro-F1 on the real test set of a classifier trained on real "
        f"train plus each variant, minus {GOLD}'s (real train alone), as the mean of the paired per-seed "
        f"differences with a {_percent(confidence)} Student-t interval (better / worse: the interval excludes 0). "
        "Is it close to the real data? The variant's distances next to gold's (a floor). Best first; the details "
        "follow."
    )
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f'<p>{esc(intro)}</p><ul class="answer">{items}</ul>'


def _distance_reference_html(table: pd.DataFrame | None) -> str:
    """What the table's ``wasserstein`` / ``mmd`` are measured against, and under which MMD bandwidth (read from
    its ``distribution_reference`` and ``mmd_bandwidth`` columns; empty when the table has neither)."""
    if table is None or len(table) == 0 or "distribution_reference" not in table.columns:
        return ""
    references = sorted(set(table["distribution_reference"].dropna().astype(str)))
    reference = ", ".join(references) or NOT_AVAILABLE
    text = f"wasserstein and mmd (MMD²) are measured against {reference}"
    if references == ["real_heldout"]:
        text += " (held-out real rows that nothing is fitted on; gold's row: real train vs held-out, a floor)"
    if "mmd_bandwidth" in table.columns:
        bandwidths = sorted({fmt(value) for value in table["mmd_bandwidth"].dropna()})
        text += f", with one RBF bandwidth for every row: {', '.join(bandwidths) or NOT_AVAILABLE}"
    return f"<p>{esc(text)}.</p>"


def _privacy_html(summary: Mapping) -> str:
    counts = dict(summary.get("counts", {}))
    rows = {
        "synthetic rows checked": summary.get("n_synthetic"),
        "flagged": f"{summary.get('n_flagged')} ({100 * float(summary.get('flagged_fraction') or 0):.2f} %)",
        **{f"flag: {name}": count for name, count in counts.items()},
        "dropped from the treatment": summary.get("n_dropped", NOT_AVAILABLE),
    }
    thresholds = summary.get("thresholds", {})
    quantiles = summary.get("dcr_quantiles", {})
    dcr = pd.DataFrame(quantiles).T if quantiles else None
    return (
        key_value_table(rows)
        + "<p>Thresholds:</p>"
        + key_value_table(thresholds)
        + "<p>Distance to closest real training record (cosine distance): synthetic vs real holdout.</p>"
        + frame_html(dcr, index=True)
    )


def _ab_html(estimate: Mapping) -> str:
    low = estimate.get("accuracy_difference_ci_low")
    high = estimate.get("accuracy_difference_ci_high")
    confidence = estimate.get("confidence")
    rows = {
        "control accuracy (real only)": estimate.get("control_accuracy"),
        "treatment accuracy (real + synthetic)": estimate.get("treatment_accuracy"),
        "control macro-F1": estimate.get("control_macro_f1"),
        "treatment macro-F1": estimate.get("treatment_macro_f1"),
        "accuracy difference (treatment - control)": estimate.get("accuracy_difference"),
        f"{_percent(confidence)} paired bootstrap CI": f"[{fmt(low)}, {fmt(high)}]",
        "McNemar exact p-value": estimate.get("mcnemar_p_value"),
        "test rows only control / only treatment gets right": (
            f"{estimate.get('mcnemar_control_only')} / {estimate.get('mcnemar_treatment_only')}"
        ),
        "training rows control / treatment": f"{estimate.get('n_train_control')} / {estimate.get('n_train_treatment')}",
        "test rows": estimate.get("n_test"),
    }
    return key_value_table(rows)


def _llm_usage_html(usage: Mapping[str, Mapping | None] | None) -> str:
    if not usage:
        return not_available_html()
    available = {method: dict(values) for method, values in usage.items() if values}
    parts = []
    if available:
        frame = pd.DataFrame(
            {
                method: {k: v for k, v in values.items() if not isinstance(v, dict | list)}
                for method, values in available.items()
            }
        ).T
        frame.index.name = "method"
        parts.append(frame_html(frame, index=True))
    missing = [method for method, values in usage.items() if not values]
    if missing:
        parts.append(f'<p class="na">{NOT_AVAILABLE}: {esc(", ".join(missing))}</p>')
    return "\n".join(parts)


# The HTML pieces of the project's reports (this run report and the structured-records report).
def image_html(png: bytes | None, caption: str, alt: str | None = None) -> str:
    """A figure with its caption (``alt``: the image's alt text, default the caption); "not available" when
    there is no PNG."""
    if not png:
        return f'<figure><p class="na">{NOT_AVAILABLE}</p><figcaption>{esc(caption)}</figcaption></figure>'
    return (
        f'<figure><img alt="{esc(alt or caption)}" src="{png_data_uri(png)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def frame_html(frame: pd.DataFrame | None, index: bool = False) -> str:
    if frame is None or len(frame) == 0:
        return not_available_html()
    return frame.to_html(index=index, escape=True, na_rep="", float_format=fmt, border=0)


def key_value_table(values: Mapping[str, object], css_class: str = "") -> str:
    if not values:
        return not_available_html()
    cls = f' class="{css_class}"' if css_class else ""
    rows = "".join(
        f"<tr><td>{esc(key)}</td><td>{esc(fmt(value))}</td></tr>" for key, value in values.items()
    )
    return f"<table{cls}>{rows}</table>"


def fmt(value: object) -> str:
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return str(value)
        if float(value).is_integer() and abs(value) >= 2:  # counts stored as floats (NaN-padded columns)
            return str(int(value))
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


def _percent(fraction: object) -> str:
    return f"{100 * float(fraction):g} %" if isinstance(fraction, int | float) else NOT_AVAILABLE


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def not_available_html() -> str:
    return f'<p class="na">{NOT_AVAILABLE}</p>'

"""One self-contained HTML report of a run (every image inlined as base64, no external file or script).

Sections: the evaluation table (SynAlign sec. 4.3-4.4, tables 1-3), GP-vs-random coverage curves (sec. 3.2),
t-SNE and other figures, the alignment weights histogram (sec. 3.4), the privacy summary, the offline A/B
estimate (sec. 4.6), LLM accounting, and synthetic examples per label next to real ones. Every table and
figure is handed in by the caller (the report node takes them as catalog inputs, figures as PNG bytes drawn
by :mod:`.plots`); this module reads no file. A section whose input is None says "not available".

Plain string templating with ``html.escape`` (no template engine needed for one fixed page). No Kedro import.
"""

from __future__ import annotations

import base64
import html
import logging
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

NOT_AVAILABLE = "not available"

_STYLE = """
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
) -> str:
    """The HTML page. Every argument but ``title`` and ``run_info`` may be None ("not available")."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        _key_value_table(run_info, css_class="meta"),
        "<h2>Evaluation</h2>",
        _distance_reference_html(evaluation_table),
        _frame_html(evaluation_table),
        "<h2>Coverage curves</h2>",
        _image(coverage_png, "GP uncertainty sampling vs random: coverage of the real data"),
    ]
    parts.append("<h2>Figures (t-SNE, ...)</h2>")
    if figures:
        for caption, png in figures.items():
            parts.append(_image(png, caption))
    else:
        parts.append(_na())
    parts += [
        "<h2>Alignment weights</h2>",
        _image(weights_png, "Histogram of the learnt MMD alignment weights"),
    ]
    parts.append("<h2>Privacy</h2>")
    if privacy_summary:
        parts.append(_privacy_html(privacy_summary))
        if flagged_rows is not None and len(flagged_rows):
            shown = flagged_rows.head(max_flagged_rows)
            parts.append(f"<p>Flagged rows (first {len(shown)} of {len(flagged_rows)}):</p>")
            parts.append(_frame_html(shown))
    else:
        parts.append(_na())
    parts.append("<h2>Offline A/B estimate</h2>")
    parts.append(_ab_html(ab_estimate) if ab_estimate else _na())
    parts.append("<h2>LLM accounting</h2>")
    parts.append(_llm_usage_html(llm_usage))
    parts.append("<h2>Examples per label: real vs synthetic</h2>")
    parts.append(_frame_html(examples))
    parts.append("</body></html>")
    return "\n".join(parts)


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
        bandwidths = sorted({_fmt(value) for value in table["mmd_bandwidth"].dropna()})
        text += f", with one RBF bandwidth for every row: {', '.join(bandwidths) or NOT_AVAILABLE}"
    return f"<p>{_esc(text)}.</p>"


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
        _key_value_table(rows)
        + "<p>Thresholds:</p>"
        + _key_value_table(thresholds)
        + "<p>Distance to closest real training record (cosine distance): synthetic vs real holdout.</p>"
        + _frame_html(dcr, index=True)
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
        f"{_percent(confidence)} paired bootstrap CI": f"[{_fmt(low)}, {_fmt(high)}]",
        "McNemar exact p-value": estimate.get("mcnemar_p_value"),
        "test rows only control / only treatment gets right": (
            f"{estimate.get('mcnemar_control_only')} / {estimate.get('mcnemar_treatment_only')}"
        ),
        "training rows control / treatment": f"{estimate.get('n_train_control')} / {estimate.get('n_train_treatment')}",
        "test rows": estimate.get("n_test"),
    }
    return _key_value_table(rows)


def _llm_usage_html(usage: Mapping[str, Mapping | None] | None) -> str:
    if not usage:
        return _na()
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
        parts.append(_frame_html(frame, index=True))
    missing = [method for method, values in usage.items() if not values]
    if missing:
        parts.append(f'<p class="na">{NOT_AVAILABLE}: {_esc(", ".join(missing))}</p>')
    return "\n".join(parts)


def _image(png: bytes | None, caption: str) -> str:
    if not png:
        return f'<figure><p class="na">{NOT_AVAILABLE}</p><figcaption>{_esc(caption)}</figcaption></figure>'
    return f'<figure><img alt="{_esc(caption)}" src="{png_data_uri(png)}"><figcaption>{_esc(caption)}</figcaption></figure>'


def _frame_html(frame: pd.DataFrame | None, index: bool = False) -> str:
    if frame is None or len(frame) == 0:
        return _na()
    return frame.to_html(index=index, escape=True, na_rep="", float_format=_fmt, border=0)


def _key_value_table(values: Mapping[str, object], css_class: str = "") -> str:
    if not values:
        return _na()
    cls = f' class="{css_class}"' if css_class else ""
    rows = "".join(
        f"<tr><td>{_esc(key)}</td><td>{_esc(_fmt(value))}</td></tr>" for key, value in values.items()
    )
    return f"<table{cls}>{rows}</table>"


def _fmt(value: object) -> str:
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


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _na() -> str:
    return f'<p class="na">{NOT_AVAILABLE}</p>'

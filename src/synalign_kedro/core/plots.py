"""Every figure of the project (one plotting module), and :func:`figure_png` to render one to PNG bytes.

- :func:`joint_tsne`: one t-SNE over the real embeddings and every variant's synthetic embeddings together
  (one shared 2-D map, so the panels are comparable and t-SNE runs once, not once per variant).
- :func:`tsne_grid_figure`: figure 3, one panel per variant, real (grey) vs synthetic (coloured).
- :func:`coverage_figure`: figure 4(b), coverage rate against sampling step per sampler (GP vs random), the
  mean over seeds with a min-max band, from the exploration pipeline's coverage table.
- :func:`coverage_sweep_figure`: figure 5, coverage against tau, one curve per k.
- :func:`alignment_loss_figure`: the alignment loss (sec. 3.4, eq. 10) per gradient step.
- :func:`weights_histogram`: the learnt alignment weights relative to uniform (sec. 3.4).
- :func:`feedback_trace_figure`: ``synalign_feedback``'s gap per round against the tokens spent (issue 15).

Figures are matplotlib ``Figure`` objects (the Agg backend; nothing is shown); nodes hand
``figure_png(figure)`` to the catalog, so that the run report can read every figure back.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from .arrays import require_columns  # noqa: E402

REAL_COLOUR = "#9e9e9e"
SYNTHETIC_COLOUR = "#d95f02"


def _subsample(array: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    if array.shape[0] <= max_points:
        return array
    return array[np.sort(rng.choice(array.shape[0], size=max_points, replace=False))]


def joint_tsne(
    real: np.ndarray,
    variants: dict[str, np.ndarray],
    max_real: int = 500,
    max_per_variant: int = 200,
    perplexity: float = 30.0,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Embed ``real`` and every array in ``variants`` into one 2-D t-SNE map (sklearn ``TSNE``, PCA
    initialisation, ``seed``). Each set is first subsampled (seeded) to ``max_real`` / ``max_per_variant``
    rows. Empty variants map to empty (0, 2) arrays. Returns (real_2d, {variant: variant_2d}).
    """
    real_values = np.asarray(real, dtype=np.float32)
    if real_values.ndim != 2 or real_values.shape[0] == 0:
        raise ValueError(f"real embeddings must be a non-empty 2-D array; got shape {real_values.shape}")
    rng = np.random.default_rng(seed)
    parts = [_subsample(real_values, max_real, rng)]
    names = []
    for name, embeddings in variants.items():
        values = np.asarray(embeddings, dtype=np.float32)
        if values.size == 0:
            values = np.zeros((0, real_values.shape[1]), dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != real_values.shape[1]:
            raise ValueError(
                f"variant {name!r} embeddings have shape {values.shape}; expected (n, {real_values.shape[1]})"
            )
        parts.append(_subsample(values, max_per_variant, rng))
        names.append(name)
    stacked = np.concatenate(parts, axis=0)
    # t-SNE needs perplexity < number of points.
    effective_perplexity = min(perplexity, max(1.0, (stacked.shape[0] - 1) / 3.0))
    points = TSNE(
        n_components=2, perplexity=effective_perplexity, init="pca", random_state=seed
    ).fit_transform(stacked)
    bounds = np.cumsum([part.shape[0] for part in parts])
    pieces = np.split(points, bounds[:-1])
    return pieces[0], dict(zip(names, pieces[1:], strict=True))


def tsne_grid_figure(
    real_2d: np.ndarray, variants_2d: dict[str, np.ndarray], columns: int = 3, title: str | None = None
) -> plt.Figure:
    """Figure 3: one panel per variant with the real points (grey) under the variant's synthetic points."""
    names = list(variants_2d) or ["(no synthetic variant)"]
    columns = max(1, min(columns, len(names)))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.0 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        synthetic = variants_2d.get(name, np.zeros((0, 2)))
        axis.scatter(
            real_2d[:, 0], real_2d[:, 1], s=6, c=REAL_COLOUR, alpha=0.6, label=f"real ({len(real_2d)} shown)"
        )
        if len(synthetic):
            axis.scatter(
                synthetic[:, 0],
                synthetic[:, 1],
                s=6,
                c=SYNTHETIC_COLOUR,
                alpha=0.7,
                label=f"{name} ({len(synthetic)} shown)",
            )
        else:
            axis.text(0.5, 0.5, "no synthetic samples", transform=axis.transAxes, ha="center", va="center")
        axis.set_title(name)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.legend(loc="lower right", fontsize=7, markerscale=2)
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    figure.suptitle(title or "t-SNE of sentence embeddings: real vs synthetic (one shared map)")
    figure.tight_layout()
    return figure


def figure_png(figure: plt.Figure, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _message_figure(message: str) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.text(0.5, 0.5, message, ha="center", va="center")
    axis.set_axis_off()
    return figure


def coverage_figure(coverage: pd.DataFrame | None, title: str | None = None) -> plt.Figure:
    """Figure 4(b): coverage rate (convex-hull area share, paper appendix A.2.3) against the sampling step.

    ``coverage`` has columns ``step, sampler, coverage`` and optionally ``seed``: one curve per sampler (the
    mean over seeds) with the min-max band over seeds. ``None`` or an empty table gives a figure that says so.
    """
    if coverage is None or len(coverage) == 0:
        return _message_figure("no coverage table (run the exploration pipeline)")
    require_columns(coverage, ["step", "sampler", "coverage"], "the coverage table")
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for sampler, rows in coverage.groupby("sampler", sort=True):
        by_step = rows.groupby("step")["coverage"].agg(["mean", "min", "max"]).sort_index()
        n_seeds = rows["seed"].nunique() if "seed" in rows.columns else 1
        name = "GP exploration" if sampler == "gp" else str(sampler)
        label = f"{name} ({n_seeds} seeds)" if n_seeds > 1 else name
        (line,) = axis.plot(by_step.index, by_step["mean"], label=label)
        if n_seeds > 1:
            axis.fill_between(by_step.index, by_step["min"], by_step["max"], color=line.get_color(), alpha=0.2)
    axis.set_xlabel("sampling step")
    axis.set_ylabel("coverage rate")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title or "Coverage of the real data (convex hulls in t-SNE space)")
    figure.tight_layout()
    return figure


def alignment_loss_figure(trace: pd.DataFrame) -> plt.Figure:
    """The alignment loss (eq. 10) per gradient step, one line per aligned group (``group, iteration, loss``)."""
    figure, axis = plt.subplots(figsize=(6, 4))
    for group, rows in trace.groupby("group"):
        axis.plot(rows["iteration"], rows["loss"], label="all" if group == "__all__" else str(group))
    if trace.empty:
        axis.text(0.5, 0.5, "empty synthetic pool: nothing aligned", ha="center", va="center")
    else:
        if (trace["loss"] > 0).all():
            axis.set_yscale("log")
        axis.legend(title="group")
    axis.set_xlabel("gradient step")
    axis.set_ylabel("alignment loss (eq. 10)")
    axis.set_title("SynAlign distribution alignment")
    figure.tight_layout()
    return figure


def feedback_trace_figure(trace: Sequence[dict]) -> plt.Figure:
    """The feedback loop of ``synalign_feedback`` (issue 15): the TVD over regions and MMD^2 to the real rows
    it may see, per round, against the tokens spent by the end of the round."""
    figure, (gap_axis, mmd_axis) = plt.subplots(1, 2, figsize=(9, 3.6))
    if not trace:
        gap_axis.text(0.5, 0.5, "no feedback round ran", ha="center", va="center")
    else:
        frame = pd.DataFrame(list(trace))
        for column, label in (("tvd", "TVD (mean of both)"), ("tvd_clusters", "clusters"), ("tvd_lengths", "lengths")):
            gap_axis.plot(frame["tokens_spent"], frame[column], marker="o", label=label)
        mmd_axis.plot(frame["tokens_spent"], frame["mmd2"], marker="o", color="#c44e52")
        for axis in (gap_axis, mmd_axis):
            for row in frame.itertuples():
                axis.annotate(f"r{row.round}", (row.tokens_spent, getattr(row, "tvd" if axis is gap_axis else "mmd2")),
                              textcoords="offset points", xytext=(3, 3), fontsize=7)  # fmt: skip
            axis.set_xlabel("tokens spent")
        gap_axis.legend(fontsize=8)
    gap_axis.set_ylabel("TVD over regions (0 = real shares)")
    mmd_axis.set_ylabel("MMD^2 to real_train")
    figure.suptitle("synalign_feedback: the gap per round")
    figure.tight_layout()
    return figure


def weights_histogram(weights: Sequence[float]) -> plt.Figure:
    """Histogram of the learnt alignment weights (SynAlign sec. 3.4), relative to uniform 1/M."""
    values = np.asarray(weights, dtype=np.float64)
    values = values[np.isfinite(values)]
    figure, axis = plt.subplots(figsize=(6.5, 3.5))
    if values.size:
        relative = values * values.size / max(values.sum(), np.finfo(float).tiny)
        axis.hist(relative, bins=min(50, max(5, int(math.sqrt(values.size)))), color="#4c72b0")
        axis.axvline(1.0, color="#c44e52", linestyle="--", label="uniform")
        axis.legend()
    axis.set_xlabel("weight x M (1 = uniform)")
    axis.set_ylabel("synthetic samples")
    axis.set_title(f"Alignment weights (M = {values.size})")
    return figure


def coverage_sweep_figure(table: pd.DataFrame, title: str | None = None) -> plt.Figure:
    """Figure 5: coverage rate after a fixed number of steps against the GP length scale tau, one curve per k;
    the random sampler (no tau) as a dashed horizontal line per k (mean over seeds).

    ``table`` columns: ``sampler`` (gp | random), ``tau``, ``k``, ``coverage`` (and optionally ``steps``).
    """
    require_columns(table, ["sampler", "tau", "k", "coverage"], "coverage sweep table")
    figure, axis = plt.subplots(figsize=(6, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, k in enumerate(sorted(table["k"].unique())):
        colour = colours[index % len(colours)]
        gp = table[(table["sampler"] == "gp") & (table["k"] == k)].groupby("tau")["coverage"].mean()
        axis.plot(gp.index, gp.values, marker="o", color=colour, label=f"GP, k={k}")
        random = table[(table["sampler"] == "random") & (table["k"] == k)]["coverage"]
        if len(random):
            axis.axhline(random.mean(), linestyle="--", color=colour, alpha=0.7, label=f"random, k={k}")
    steps = f" after {int(table['steps'].iloc[0])} steps" if "steps" in table.columns and len(table) else ""
    axis.set_xlabel("tau (kernel length scale)")
    axis.set_ylabel(f"coverage rate{steps}")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title or "Coverage vs tau and k (figure 5)")
    figure.tight_layout()
    return figure

"""Convex-hull coverage of the real data by a sampler (SynAlign sec. 4.4.1, figure 4, appendix A.2.3).

Appendix A.2.3: the embeddings are reduced to 2-D with t-SNE; the convex hull of all 2-D points is the total
area. At each sampling step one sample is selected, its k nearest neighbours in the 2-D space (k-d tree)
join it, and the convex hull of those k+1 points is added to a buffer of hulls; a new hull that overlaps
existing hulls is merged with them into one larger convex hull (repeated until it overlaps none). The
coverage rate after a step is the total area of the buffered hulls over the total area.

Samplers compared: ``gp``, the pivots of the exploration tracker (:mod:`.exploration`, one global tracker,
one pivot per round) and ``random``, uniformly random samples without replacement (several seeds).

Libraries: scikit-learn's TSNE, scipy's cKDTree, shapely for hulls and unions. ``merge="union"`` replaces the
paper's convex merge by the plain union of hulls (a stricter, never larger, measure).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .arrays import require_columns
from .demonstrations import TrackerSettings
from .exploration import UncertaintyTracker

logger = logging.getLogger(__name__)

MERGES = ("convex_hull", "union")


class CoverageSettings(BaseModel):
    """``exploration.coverage``: GP vs random coverage (figure 4); the GP uses the tracker's tau, kernel, noise."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(200, ge=1, description="sampling steps (one sample + its k 2-D neighbours per step)")
    k: int | None = Field(None, ge=0, description="null = tracker.k")
    random_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], min_length=1)
    merge: Literal[MERGES] = "convex_hull"  # type: ignore[valid-type]
    max_points: int | None = Field(2000, ge=2, description="t-SNE on at most this many rows")
    tsne_perplexity: float = Field(30.0, gt=0)
    tsne_threads: int | None = Field(1, ge=1, description="OpenMP threads for t-SNE; null = library default")
    report_steps: list[int] = Field(default_factory=lambda: [50, 200])


class ExplorationSettings(BaseModel):
    """The ``exploration`` parameter block: the tracker (:class:`.demonstrations.TrackerSettings`) and the
    coverage measurement. Defined here because coverage reads both parts."""

    model_config = ConfigDict(extra="forbid")

    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    coverage: CoverageSettings = Field(default_factory=CoverageSettings)


class CoverageSweepSettings(BaseModel):
    """The ``coverage_sweep`` parameter block (sec. 4.5.1-4.5.2, figure 5; pipeline ``coverage_sweep``)."""

    model_config = ConfigDict(extra="forbid")

    taus: list[float] = Field(default_factory=lambda: [0.1, 0.3, 0.6, 0.9, 1.2, 1.5, 2.0], min_length=1)
    ks: list[int] = Field(default_factory=lambda: [2, 4, 8], min_length=1)
    steps: int = Field(100, ge=1, description="coverage is read after this many sampling steps")
    random_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    kernel: Literal["exponential", "rbf"] = "exponential"
    merge: Literal[MERGES] = "convex_hull"  # type: ignore[valid-type]
    max_points: int | None = Field(1000, ge=2, description="real embeddings subsampled for t-SNE and the GP")
    tsne_perplexity: float = Field(30.0, gt=0)
    device: str = "auto"

    @field_validator("taus")
    @classmethod
    def _positive(cls, taus: list[float]) -> list[float]:
        if not all(tau > 0 for tau in taus):
            raise ValueError(f"coverage_sweep.taus must be positive numbers (the swept axis); got {taus}")
        return taus


def tsne_2d(
    embeddings: np.ndarray, seed: int = 42, perplexity: float = 30.0, threads: int | None = None
) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init, fixed seed) of the embeddings, float64 (N, 2).

    ``threads`` caps the OpenMP/BLAS threads t-SNE uses (None = the libraries' default). On a machine whose
    cores are shared with other jobs, 1 is up to 10x faster than 2 (oversubscribed OpenMP threads spin)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] < 5:
        raise ValueError(f"t-SNE needs a 2-D array with at least 5 rows, got shape {embeddings.shape}")
    perplexity = min(float(perplexity), (embeddings.shape[0] - 1) / 3.0)
    projection = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=1)
    with threadpool_limits(limits=threads):
        return projection.fit_transform(embeddings).astype(np.float64)


def coverage_curve(
    points_2d: np.ndarray,
    sequence: Sequence[int],
    k: int,
    merge: str = "convex_hull",
    steps: int | None = None,
) -> np.ndarray:
    """Coverage rate after each step of ``sequence`` (one selected sample per step), per appendix A.2.3.

    ``steps`` pads the curve to that length with its last value (a sampler that ran out of samples covers
    nothing new) or truncates it.
    """
    from scipy.spatial import cKDTree
    from shapely import MultiPoint, unary_union

    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
    points_2d = np.asarray(points_2d, dtype=np.float64)
    if points_2d.ndim != 2 or points_2d.shape[1] != 2:
        raise ValueError(f"points_2d must have shape (N, 2), got {points_2d.shape}")
    n = points_2d.shape[0]
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    total = MultiPoint(points_2d).convex_hull.area
    if not total > 0:
        raise ValueError("the 2-D points span no area (fewer than 3 distinct, non-collinear points)")
    tree = cKDTree(points_2d)
    n_query = min(k + 1, n)
    hulls: list = []
    covered = None
    curve: list[float] = []
    for index in sequence:
        _, neighbours = tree.query(points_2d[int(index)], k=n_query)
        neighbours = np.atleast_1d(neighbours)
        new = MultiPoint(points_2d[np.unique(np.append(neighbours, int(index)))]).convex_hull
        if merge == "union":
            covered = new if covered is None else covered.union(new)
            curve.append(covered.area / total)
            continue
        while True:
            overlapping = [hull for hull in hulls if hull.intersects(new)]
            if not overlapping:
                break
            hulls = [hull for hull in hulls if not hull.intersects(new)]
            new = unary_union([new, *overlapping]).convex_hull
        hulls.append(new)
        curve.append(sum(hull.area for hull in hulls) / total)
    result = np.asarray(curve, dtype=np.float64)
    if steps is not None:
        if len(result) >= steps:
            result = result[:steps]
        else:
            result = np.concatenate(
                [result, np.full(steps - len(result), result[-1] if len(result) else 0.0)]
            )
    return np.minimum(result, 1.0)


def gp_sequence(
    embeddings: np.ndarray,
    steps: int,
    k: int,
    tau: float | str = "median",
    kernel: str = "exponential",
    noise: float = 1e-6,
    device: str = "auto",
    dtype: str = "mixed",
    seed: int = 0,
) -> list[int]:
    """The GP sampler's selected sample per step: the pivot of each round of one global tracker run for
    ``steps`` rounds with no variance threshold (each round also marks the pivot's k nearest neighbours in
    embedding space as selected, eq. 3)."""
    tracker = UncertaintyTracker(
        embeddings, tau=tau, kernel=kernel, noise=noise, device=device, dtype=dtype, seed=seed
    )
    result = tracker.run(k=k, threshold=-1.0, max_rounds=steps)
    return [selection.pivot for selection in result.rounds]


def random_sequence(n: int, steps: int, seed: int) -> list[int]:
    """``steps`` distinct uniformly random samples (numpy Generator, ``seed``)."""
    rng = np.random.default_rng(seed)
    return rng.permutation(n)[: min(steps, n)].tolist()


def coverage_table(
    embeddings: np.ndarray,
    steps: int = 200,
    k: int = 4,
    random_seeds: Sequence[int] = (0, 1, 2, 3, 4),
    tau: float | str = "median",
    kernel: str = "exponential",
    noise: float = 1e-6,
    merge: str = "convex_hull",
    max_points: int | None = 2000,
    tsne_seed: int = 42,
    tsne_perplexity: float = 30.0,
    tsne_threads: int | None = None,
    device: str = "auto",
    dtype: str = "mixed",
) -> pd.DataFrame:
    """Coverage curves (columns ``step, sampler, seed, coverage``; ``step`` from 1) of the GP sampler and of
    the random sampler (one curve per seed in ``random_seeds``), on one shared t-SNE map.

    More than ``max_points`` embeddings are subsampled uniformly (seed ``tsne_seed``) first, to keep t-SNE
    fast (~10-20 s for 2,000 x 384 on 2 cores); the GP curve's ``seed`` is ``tsne_seed``.
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, d), got shape {embeddings.shape}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not random_seeds:
        raise ValueError("random_seeds must name at least one seed")
    if max_points is not None and embeddings.shape[0] > max_points:
        rng = np.random.default_rng(tsne_seed)
        embeddings = embeddings[np.sort(rng.choice(embeddings.shape[0], size=max_points, replace=False))]
        logger.info("Coverage: subsampled %d embeddings for t-SNE", max_points)
    points_2d = tsne_2d(embeddings, seed=tsne_seed, perplexity=tsne_perplexity, threads=tsne_threads)
    rows = []
    curves = {
        ("gp", tsne_seed): gp_sequence(embeddings, steps, k, tau, kernel, noise, device, dtype, tsne_seed)
    }
    for seed in random_seeds:
        curves[("random", int(seed))] = random_sequence(len(points_2d), steps, int(seed))
    for (sampler, seed), sequence in curves.items():
        curve = coverage_curve(points_2d, sequence, k, merge=merge, steps=steps)
        rows.append(
            pd.DataFrame(
                {"step": np.arange(1, steps + 1), "sampler": sampler, "seed": seed, "coverage": curve}
            )
        )
    return pd.concat(rows, ignore_index=True)


def coverage_summary(table: pd.DataFrame, at_steps: Sequence[int] = (50, 200)) -> dict[str, float]:
    """Scalar metrics from a :func:`coverage_table`: ``coverage_auc_<sampler>`` (mean coverage over the steps,
    i.e. the area under the curve divided by the number of steps, averaged over seeds) and
    ``coverage_<sampler>_at_<step>`` (mean over seeds) for every step in ``at_steps`` that the table has."""
    require_columns(table, ["step", "sampler", "seed", "coverage"], "coverage table")
    summary: dict[str, float] = {}
    mean_curves = table.groupby(["sampler", "step"])["coverage"].mean()
    for sampler in sorted(table["sampler"].unique()):
        curve = mean_curves.loc[sampler]
        summary[f"coverage_auc_{sampler}"] = float(curve.mean())
        for step in at_steps:
            if step in curve.index:
                summary[f"coverage_{sampler}_at_{int(step)}"] = float(curve.loc[step])
    return summary


def exploration_coverage(
    embeddings: np.ndarray, settings: ExplorationSettings, seed: int
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The ``exploration`` block's coverage run: :func:`coverage_table` with the tracker's kernel, and its
    :func:`coverage_summary` at ``coverage.report_steps``."""
    tracker, options = settings.tracker, settings.coverage
    table = coverage_table(
        embeddings,
        steps=options.steps,
        k=tracker.k if options.k is None else options.k,
        random_seeds=options.random_seeds,
        tau=tracker.tau,
        kernel=tracker.kernel,
        noise=tracker.noise,
        merge=options.merge,
        max_points=options.max_points,
        tsne_seed=int(seed),
        tsne_perplexity=options.tsne_perplexity,
        tsne_threads=options.tsne_threads,
        device=tracker.device,
        dtype=tracker.dtype,
    )
    summary = coverage_summary(table, at_steps=options.report_steps)
    logger.info("Coverage: %s", {name: round(value, 4) for name, value in summary.items()})
    return table, summary


def coverage_sweep(embeddings: np.ndarray, settings: CoverageSweepSettings, seed: int) -> pd.DataFrame:
    """Coverage after ``steps`` sampling steps for every (tau, k) of the GP sampler and every k of the random
    sampler (``tau`` NaN, one row per random seed), on one shared t-SNE map. Columns:
    ``sampler, tau, k, seed, steps, coverage`` (figure 5)."""
    embeddings = np.asarray(embeddings)
    if settings.max_points is not None and embeddings.shape[0] > settings.max_points:
        rng = np.random.default_rng(seed)
        picked = rng.choice(embeddings.shape[0], size=settings.max_points, replace=False)
        embeddings = embeddings[np.sort(picked)]
    steps = settings.steps
    points_2d = tsne_2d(embeddings, seed=seed, perplexity=settings.tsne_perplexity)
    rows = []
    for k in settings.ks:
        for tau in settings.taus:
            sequence = gp_sequence(
                embeddings, steps, int(k), tau=tau, kernel=settings.kernel, device=settings.device, seed=seed
            )
            curve = coverage_curve(points_2d, sequence, int(k), merge=settings.merge, steps=steps)
            rows.append(
                {"sampler": "gp", "tau": float(tau), "k": int(k), "seed": seed, "steps": steps,
                 "coverage": float(curve[-1])}
            )  # fmt: skip
            logger.info("coverage sweep: gp tau=%s k=%s -> %.3f", tau, k, curve[-1])
        for random_seed in settings.random_seeds:
            sequence = random_sequence(len(points_2d), steps, int(random_seed))
            curve = coverage_curve(points_2d, sequence, int(k), merge=settings.merge, steps=steps)
            rows.append(
                {"sampler": "random", "tau": float("nan"), "k": int(k), "seed": int(random_seed),
                 "steps": steps, "coverage": float(curve[-1])}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["sampler", "tau", "k", "seed", "steps", "coverage"])

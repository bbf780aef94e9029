"""The tau and k sweep of exploration-aware sampling coverage (SynAlign sec. 4.5.1-4.5.2, figure 5).

A separate, non-default pipeline (it runs the GP tracker once per (tau, k)): register
``create_coverage_sweep_pipeline()`` under the name ``coverage_sweep`` and run ``kedro run --pipeline
coverage_sweep``. One t-SNE map is shared by every setting; the coverage measure and samplers come from
``synalign_kedro.core.coverage`` (appendix A.2.3).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from kedro.pipeline import Pipeline, node

from synalign_kedro.core import coverage
from synalign_kedro.core.plots import coverage_sweep_figure

logger = logging.getLogger(__name__)


def sweep_coverage(
    real_train_embeddings: np.ndarray, coverage_sweep: dict[str, Any], seed: int
) -> pd.DataFrame:
    """Coverage after ``steps`` sampling steps for every (tau, k) of the GP sampler and every k of the random
    sampler (``tau`` NaN, one row per random seed). Columns: ``sampler, tau, k, seed, steps, coverage``."""
    embeddings = np.asarray(real_train_embeddings)
    taus = coverage_sweep.get("taus", [0.5, 1.0])
    if not all(isinstance(tau, (int, float)) and tau > 0 for tau in taus):
        raise ValueError(f"coverage_sweep.taus must be positive numbers (the swept axis); got {taus}")
    max_points = coverage_sweep.get("max_points", 1000)
    if max_points is not None and embeddings.shape[0] > max_points:
        rng = np.random.default_rng(seed)
        embeddings = embeddings[np.sort(rng.choice(embeddings.shape[0], size=int(max_points), replace=False))]
    steps = int(coverage_sweep.get("steps", 100))
    merge = coverage_sweep.get("merge", "convex_hull")
    points_2d = coverage.tsne_2d(
        embeddings, seed=seed, perplexity=float(coverage_sweep.get("tsne_perplexity", 30))
    )
    rows = []
    for k in coverage_sweep.get("ks", [4]):
        for tau in taus:
            sequence = coverage.gp_sequence(
                embeddings,
                steps,
                int(k),
                tau=tau,
                kernel=coverage_sweep.get("kernel", "exponential"),
                device=coverage_sweep.get("device", "auto"),
                seed=seed,
            )
            curve = coverage.coverage_curve(points_2d, sequence, int(k), merge=merge, steps=steps)
            rows.append(
                {
                    "sampler": "gp",
                    "tau": float(tau),
                    "k": int(k),
                    "seed": seed,
                    "steps": steps,
                    "coverage": float(curve[-1]),
                }
            )
            logger.info("coverage sweep: gp tau=%s k=%s -> %.3f", tau, k, curve[-1])
        for random_seed in coverage_sweep.get("random_seeds", [0, 1, 2]):
            sequence = coverage.random_sequence(len(points_2d), steps, int(random_seed))
            curve = coverage.coverage_curve(points_2d, sequence, int(k), merge=merge, steps=steps)
            rows.append(
                {
                    "sampler": "random",
                    "tau": float("nan"),
                    "k": int(k),
                    "seed": int(random_seed),
                    "steps": steps,
                    "coverage": float(curve[-1]),
                }
            )
    return pd.DataFrame(rows, columns=["sampler", "tau", "k", "seed", "steps", "coverage"])


def plot_coverage_sweep(coverage_sweep_table: pd.DataFrame):
    """Figure 5: coverage against tau, one curve per k, with the random sampler's mean as dashed lines."""
    return coverage_sweep_figure(coverage_sweep_table)


def create_coverage_sweep_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                sweep_coverage,
                ["real_train_embeddings", "params:coverage_sweep", "params:seed"],
                "coverage_sweep_table",
                name="sweep_coverage",
                tags="gpu",
            ),
            node(
                plot_coverage_sweep, "coverage_sweep_table", "coverage_sweep_plot", name="plot_coverage_sweep"
            ),
        ],
        tags="coverage_sweep",
    )

"""Thin nodes of the tau x k coverage sweep (SynAlign sec. 4.5.1-4.5.2, figure 5)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core.coverage import CoverageSweepSettings, coverage_sweep
from synalign_kedro.core.plots import coverage_sweep_figure, figure_png


def sweep_coverage(real_train_embeddings: np.ndarray, params: dict[str, Any], seed: int) -> pd.DataFrame:
    """Coverage after ``steps`` steps for every (tau, k) of the GP sampler and every k of the random sampler."""
    return coverage_sweep(real_train_embeddings, CoverageSweepSettings.model_validate(params), seed)


def plot_coverage_sweep(coverage_sweep_table: pd.DataFrame) -> bytes:
    """Figure 5 (PNG): coverage against tau, one curve per k, the random sampler's mean dashed."""
    return figure_png(coverage_sweep_figure(coverage_sweep_table))

"""Thin node of the |Theta| sweep (SynAlign table 5)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synalign_kedro.core import aligned_variants as core


def sweep_n_projections(
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    real_train: pd.DataFrame,
    real_embeddings: np.ndarray,
    params: dict[str, Any],
    sweep: dict[str, Any],
    seed: int,
) -> pd.DataFrame:
    """Wasserstein distance of the resampled pool to real train for each |Theta| (table 5)."""
    return core.theta_sweep(
        pool, pool_embeddings, real_train, real_embeddings,
        core.AlignmentSettings.model_validate(params), core.AlignmentSweepSettings.model_validate(sweep), seed,
    )  # fmt: skip

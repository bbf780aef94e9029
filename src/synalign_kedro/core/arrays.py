"""Input checks shared by the numeric modules (metrics, alignment, privacy, classifier)."""

from __future__ import annotations

import numpy as np


def finite_matrix(name: str, values, dtype=np.float64) -> np.ndarray:
    """``values`` as a 2-D ``dtype`` array (rows x dimensions), or a ValueError that names ``name`` and says
    what is wrong: the shape when it is not 2-D, or that it holds NaN or infinite values."""
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows x dimensions); got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array

"""Input checks shared by the core modules: a finite 2-D matrix, a table with the columns asked for."""

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


def require_columns(frame, columns, name: str) -> None:
    """A ValueError naming the table ``name``, the missing columns (in the order asked) and the columns it
    has, unless ``frame`` has every column of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(frame.columns)}")

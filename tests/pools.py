"""Synthetic pools built by hand for node tests: the generation pipeline's pool contract (POOL_COLUMNS)."""

from __future__ import annotations

import pandas as pd

from synalign_kedro.core.generation import POOL_COLUMNS


def synthetic_pool(texts: list[str], labels: list[str], method: str) -> pd.DataFrame:
    """A pool of ``texts`` with ``labels``, as ``method`` would have generated it (ids ``<method><i>``)."""
    n = len(texts)
    return pd.DataFrame(
        {
            "synthetic_id": [f"{method}{i}" for i in range(n)],
            "text": texts,
            "label": labels,
            "method": method,
            "batch_id": 0,
            "summary": "",
            "prompt_hash": "h",
            "model": "m",
            "raw_response": "",
        },
        columns=POOL_COLUMNS,
    )

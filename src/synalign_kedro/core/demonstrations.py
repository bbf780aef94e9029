"""Demonstration batches (SynAlign sec. 3.2, Algorithm 1): one uncertainty tracker (:mod:`.exploration`) per
label, its rounds interleaved into batches of ``k + 1`` real rows; and the ``exploration.tracker`` settings.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .arrays import require_columns
from .exploration import PRECISIONS, SelectionResult, UncertaintyTracker
from .gp_kernel import KERNELS, BandwidthWarning, check_bandwidth, resolve_bandwidth

logger = logging.getLogger(__name__)

BATCH_COLUMNS = ["batch_id", "label", "row_ids", "texts", "variance_at_selection", "round"]


class TrackerSettings(BaseModel):
    """The ``exploration.tracker`` parameter block (Algorithm 1, eq. 1-5); see docs/exploration.md."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(4, ge=0, description="nearest neighbours added to each most-uncertain sample (eq. 3)")
    tau: float | Literal["median"] = Field("median", description="kernel bandwidth (eq. 2) or the median heuristic")
    kernel: Literal[KERNELS] = "exponential"  # type: ignore[valid-type]
    noise: float = Field(1e-6, ge=0, description="variance added to K(E_s, E_s) (eq. 5)")
    threshold: float = Field(0.05, description="sigma: stop when every unselected variance is <= this")
    max_rounds: int | None = Field(8, ge=1, description="rounds per tracker; null = until the threshold")
    per_label: bool = True
    device: str = "auto"
    dtype: Literal[tuple(PRECISIONS)] = "mixed"  # type: ignore[valid-type]
    median_sample: int = Field(1000, ge=2, description="rows sampled for tau=median")


@dataclass(frozen=True)
class DemonstrationBatch:
    """A demonstration batch: positions (0-based rows of the embedding matrix) and the label it is for."""

    batch_id: int
    label: str
    round: int
    rows: tuple[int, ...]
    variance_at_selection: float


def select_demonstrations(
    embeddings: np.ndarray,
    labels: Sequence[str] | None,
    k: int = 4,
    tau: float | str = "median",
    kernel: str = "exponential",
    noise: float = 1e-6,
    threshold: float = 0.05,
    max_rounds: int | None = 8,
    per_label: bool = True,
    device: str = "auto",
    dtype: str = "mixed",
    median_sample: int = 1000,
    seed: int = 0,
) -> tuple[list[DemonstrationBatch], list[dict]]:
    """Run the uncertainty tracker (Algorithm 1) and return the demonstration batches and a per-round trace.

    ``per_label=True`` (default): one tracker per label over that label's rows only (class-conditional
    demonstrations), ``max_rounds`` per label; batches are interleaved round by round across labels (label
    order sorted), so a consumer that takes the first n batches still sees every label. ``per_label=False``:
    one tracker over all rows; a batch's label is its pivot's label (its neighbours may carry other labels).
    ``tau='median'`` is resolved once on all embeddings so that every label uses the same bandwidth.

    Trace rows: ``tracker`` (label or ``"__all__"``), ``round``, ``n_selected`` (after the round),
    ``max_variance_before`` (the pivot's variance), ``max_variance_after``, ``mean_variance_after``,
    ``stop_reason`` (on the tracker's last row).
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, d), got shape {embeddings.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    n = embeddings.shape[0]
    if labels is None:
        if per_label:
            raise ValueError("per_label=True needs labels")
        labels = ["" for _ in range(n)]
    labels = np.asarray([str(label) for label in labels], dtype=object)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} embeddings: they must match row for row")
    if n == 0:
        return [], []
    tau_value = resolve_bandwidth(tau, embeddings, median_sample, seed) if n > 1 else 1.0
    message = check_bandwidth(embeddings, tau_value, kernel, seed=seed)
    if message:
        logger.warning(message)
        warnings.warn(message, BandwidthWarning, stacklevel=2)
    groups = (
        [(str(label), np.flatnonzero(labels == label)) for label in sorted(set(labels.tolist()))]
        if per_label
        else [("__all__", np.arange(n))]
    )
    per_group: list[tuple[str, np.ndarray, SelectionResult]] = []
    trace: list[dict] = []
    for name, rows in groups:
        tracker = UncertaintyTracker(
            embeddings[rows],
            tau=tau_value,
            kernel=kernel,
            noise=noise,
            device=device,
            dtype=dtype,
            seed=seed,
            warn_bandwidth=False,
        )
        result = tracker.run(k=k, threshold=threshold, max_rounds=max_rounds)
        logger.info(
            "Exploration tracker %s: %d rows, %d rounds, %d selected, stop: %s",
            name,
            len(rows),
            len(result.rounds),
            tracker.n_selected,
            result.stop_reason,
        )
        per_group.append((name, rows, result))
        n_selected = 0
        for selection in result.rounds:
            n_selected += len(selection.members)
            trace.append(
                {
                    "tracker": name,
                    "round": selection.round,
                    "n_selected": n_selected,
                    "max_variance_before": selection.variance_at_selection,
                    "max_variance_after": selection.max_variance_after,
                    "stop_reason": "",
                }
            )
        if trace and result.rounds:
            trace[-1]["stop_reason"] = result.stop_reason
        else:
            trace.append(
                {
                    "tracker": name,
                    "round": -1,
                    "n_selected": 0,
                    "max_variance_before": float("nan"),
                    "max_variance_after": float(result.final_variance.max()),
                    "stop_reason": result.stop_reason,
                }
            )
    batches: list[DemonstrationBatch] = []
    longest = max((len(result.rounds) for _, _, result in per_group), default=0)
    for round_number in range(longest):
        for name, rows, result in per_group:
            if round_number >= len(result.rounds):
                continue
            selection = result.rounds[round_number]
            members = tuple(int(rows[i]) for i in selection.members)
            label = str(labels[members[0]]) if not per_label else name
            batches.append(
                DemonstrationBatch(
                    batch_id=len(batches),
                    label=label,
                    round=round_number,
                    rows=members,
                    variance_at_selection=selection.variance_at_selection,
                )
            )
    return batches, trace


def demonstration_batches(
    real_train: pd.DataFrame, embeddings: np.ndarray, settings: TrackerSettings, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demonstration batches of ``real_train`` (columns :data:`BATCH_COLUMNS`: row ids and texts of each
    batch) and the per-round trace of :func:`select_demonstrations`."""
    require_columns(real_train, ["row_id", "text", "label"], "real_train")
    if len(embeddings) != len(real_train):
        raise ValueError(
            f"real_train_embeddings has {len(embeddings)} rows but real_train has {len(real_train)}: "
            "re-run the embed_real_train node"
        )
    batches, trace = select_demonstrations(
        embeddings, real_train["label"].astype(str).tolist(), seed=int(seed), **settings.model_dump()
    )
    row_ids = real_train["row_id"].astype(str).to_numpy()
    texts = real_train["text"].astype(str).to_numpy()
    frame = pd.DataFrame(
        [
            {
                "batch_id": batch.batch_id,
                "label": batch.label,
                "row_ids": [row_ids[i] for i in batch.rows],
                "texts": [texts[i] for i in batch.rows],
                "variance_at_selection": float(batch.variance_at_selection),
                "round": batch.round,
            }
            for batch in batches
        ],
        columns=BATCH_COLUMNS,
    )
    frame = frame.astype({"batch_id": "int64", "round": "int64", "variance_at_selection": "float64"})
    logger.info("Exploration: %d demonstration batches over %d labels", len(frame), frame["label"].nunique())
    return frame, pd.DataFrame(trace)

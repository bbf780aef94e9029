"""Regions of the real data and the signed gap a synthetic set leaves in them: what the discrepancy-feedback
method (``synalign_feedback``, :mod:`.generation.methods.feedback`) measures each round.

Neither paper does this for text. It carries LLMSynthor's idea (``../shared/LLMSYNTHOR.md``: each round,
measure where the synthetic data falls short of the target statistics and ask for exactly that) over to
SynAlign's setting: the "statistics" of a label are

- the shares of its real rows in ``k`` embedding clusters (k-means on the real embeddings, with
  ``k = round(sqrt(n / 2))`` of the label's ``n`` real rows, the usual rule of thumb, within
  ``[1, max_regions]``), and
- the shares of its real rows in ``length_bins`` bins of word count (quantile edges of the real counts:
  length is the attribute SynAlign already measures in code, :func:`.generation.prompts.word_count_description`).

A synthetic text is assigned to the nearest cluster centre and to its length bin. The signed gap of a region
is ``real share - synthetic share`` (positive: the synthetic set has too few texts there), and the total
variation distance over a partition is ``0.5 * sum |gap|``. The two partitions are marginals (like
LLMSynthor's per-column statistics), not a joint grid: with 8 real rows per label a joint grid would be
mostly empty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import CountVectorizer


def cluster_count(n_rows: int, max_regions: int) -> int:
    """k for ``n_rows`` real rows of one label: ``round(sqrt(n / 2))`` within ``[1, max_regions]``."""
    return max(1, min(max_regions, round(math.sqrt(n_rows / 2)), n_rows))


def word_counts(texts: Sequence[str]) -> np.ndarray:
    return np.array([len(str(t).split()) for t in texts], dtype=np.int64)


@dataclass(frozen=True)
class LengthBins:
    """Word-count bins: bin ``i`` holds the counts ``<= upper[i]`` (and above the previous bound); the last
    bin has no upper bound."""

    upper: tuple[int, ...]

    @classmethod
    def from_counts(cls, counts: Sequence[int], n_bins: int) -> LengthBins:
        """Quantile edges of the real counts (``i / n_bins``), as integers, distinct, and below the largest
        count so that no bin is empty of real rows by construction."""
        values = np.asarray(counts, dtype=np.float64)
        if values.size == 0 or n_bins <= 1:
            return cls(())
        edges = np.floor(np.quantile(values, [i / n_bins for i in range(1, n_bins)])).astype(int)
        return cls(tuple(int(e) for e in sorted(set(edges.tolist())) if e < values.max()))

    @property
    def n_bins(self) -> int:
        return len(self.upper) + 1

    def assign(self, counts: Sequence[int]) -> np.ndarray:
        return np.searchsorted(np.asarray(self.upper, dtype=np.int64), np.asarray(counts, dtype=np.int64), "left")

    def names(self) -> list[str]:
        """``["at most 9 words", "10-18 words", "more than 18 words"]`` (one bin: ``["any length"]``)."""
        if not self.upper:
            return ["any length"]
        names = [f"at most {self.upper[0]} words"]
        names += [
            f"{low + 1} words" if high == low + 1 else f"{low + 1}-{high} words"
            for low, high in zip(self.upper, self.upper[1:], strict=False)
        ]
        return names + [f"more than {self.upper[-1]} words"]


@dataclass(frozen=True)
class RegionGap:
    """The signed gaps (real share - synthetic share) of one label's regions for one synthetic set."""

    cluster_gap: np.ndarray
    length_gap: np.ndarray
    n_synthetic: int

    @property
    def tvd_clusters(self) -> float:
        return 0.5 * float(np.abs(self.cluster_gap).sum())

    @property
    def tvd_lengths(self) -> float:
        return 0.5 * float(np.abs(self.length_gap).sum())

    @property
    def tvd(self) -> float:
        """The mean of the two partitions' total variation distances (0: the shares match; 1: disjoint)."""
        return 0.5 * (self.tvd_clusters + self.tvd_lengths)


@dataclass(frozen=True)
class LabelRegions:
    """One label's regions: cluster centres, length bins, the real shares, and which real rows (positions in
    the frame the regions were fitted on) fall in each cluster, with each cluster's distinctive words."""

    label: str
    centres: np.ndarray  # (k, d)
    lengths: LengthBins
    real_cluster_share: np.ndarray  # (k,)
    real_length_share: np.ndarray  # (n_bins,)
    members: tuple[np.ndarray, ...]  # per cluster: row positions in the fitted frame
    keywords: tuple[tuple[str, ...], ...]  # per cluster

    @property
    def n_clusters(self) -> int:
        return int(self.centres.shape[0])

    def assign_clusters(self, embeddings: np.ndarray) -> np.ndarray:
        """The nearest centre (Euclidean) of each row of ``embeddings``."""
        points = np.asarray(embeddings, dtype=np.float64).reshape(-1, self.centres.shape[1])
        if points.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        squared = ((points[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2)
        return squared.argmin(axis=1)

    def gap(self, embeddings: np.ndarray, texts: Sequence[str]) -> RegionGap:
        """The signed gaps for a synthetic set of this label (no synthetic row: every gap is the real share)."""
        clusters = self.assign_clusters(embeddings)
        bins = self.lengths.assign(word_counts(texts))
        if len(clusters) != len(bins):
            raise ValueError(f"{len(clusters)} embeddings but {len(bins)} texts for label {self.label!r}")
        return RegionGap(
            cluster_gap=self.real_cluster_share - _shares(clusters, self.n_clusters),
            length_gap=self.real_length_share - _shares(bins, self.lengths.n_bins),
            n_synthetic=len(clusters),
        )


def _shares(assignment: np.ndarray, size: int) -> np.ndarray:
    counts = np.bincount(np.asarray(assignment, dtype=np.int64), minlength=size).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def fit_regions(
    texts: Sequence[str],
    labels: Sequence[str],
    embeddings: np.ndarray,
    max_regions: int = 8,
    length_bins: int = 3,
    seed: int = 0,
    keywords_per_region: int = 3,
) -> dict[str, LabelRegions]:
    """The regions of every label of the real data (k-means with ``n_init=10`` and ``seed``)."""
    texts = [str(t) for t in texts]
    labels_array = np.asarray([str(label) for label in labels])
    points = np.asarray(embeddings, dtype=np.float64)
    if not (len(texts) == len(labels_array) == points.shape[0]):
        raise ValueError(
            f"fit_regions needs one embedding per text and label; got {points.shape[0]} embeddings, "
            f"{len(texts)} texts, {len(labels_array)} labels"
        )
    regions: dict[str, LabelRegions] = {}
    for label in sorted(set(labels_array.tolist())):
        rows = np.flatnonzero(labels_array == label)
        k = cluster_count(len(rows), max_regions)
        if k == 1:
            assignment = np.zeros(len(rows), dtype=np.int64)
            centres = points[rows].mean(axis=0, keepdims=True)
        else:
            model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(points[rows])
            assignment, centres = model.labels_.astype(np.int64), model.cluster_centers_
        counts = word_counts([texts[i] for i in rows])
        bins = LengthBins.from_counts(counts, length_bins)
        regions[label] = LabelRegions(
            label=label,
            centres=np.asarray(centres, dtype=np.float64),
            lengths=bins,
            real_cluster_share=_shares(assignment, k),
            real_length_share=_shares(bins.assign(counts), bins.n_bins),
            members=tuple(rows[assignment == c] for c in range(k)),
            keywords=_distinctive_words([texts[i] for i in rows], assignment, k, keywords_per_region),
        )
    return regions


def _distinctive_words(texts: list[str], assignment: np.ndarray, k: int, top: int) -> tuple[tuple[str, ...], ...]:
    """Per cluster, the words whose share of the cluster's texts most exceeds their share of the label's
    other texts (English stop words left out): the "about plot, acting" of the prompt's guidance."""
    try:
        vectorizer = CountVectorizer(stop_words="english", binary=True, token_pattern=r"(?u)\b[a-zA-Z]{3,}\b")
        presence = vectorizer.fit_transform(texts).toarray().astype(np.float64)
    except ValueError:  # only stop words
        return tuple(() for _ in range(k))
    vocabulary = np.asarray(vectorizer.get_feature_names_out())
    words = []
    for cluster in range(k):
        inside = assignment == cluster
        share_in = presence[inside].mean(axis=0)
        share_out = presence[~inside].mean(axis=0) if (~inside).any() else np.zeros_like(share_in)
        score = share_in - share_out
        order = np.lexsort((vocabulary, -share_in, -score))  # by score, then frequency, then alphabet
        words.append(tuple(str(vocabulary[i]) for i in order[:top] if share_in[i] > 0))
    return tuple(words)


def gaps_by_label(
    regions: dict[str, LabelRegions],
    texts: Sequence[str],
    labels: Sequence[str],
    embeddings: np.ndarray,
) -> dict[str, RegionGap]:
    """The gap of every label's regions for a synthetic set (its rows split by label)."""
    labels_array = np.asarray([str(label) for label in labels])
    points = np.asarray(embeddings, dtype=np.float64)
    texts = [str(t) for t in texts]
    out = {}
    for label, label_regions in regions.items():
        rows = np.flatnonzero(labels_array == label)
        out[label] = label_regions.gap(points[rows], [texts[i] for i in rows])
    return out


def weighted_tvd(gaps: dict[str, RegionGap], label_weights: dict[str, float], which: str = "tvd") -> float:
    """The labels' TVD (``which``: ``tvd``, ``tvd_clusters`` or ``tvd_lengths`` of :class:`RegionGap`),
    averaged with the real label frequencies as weights."""
    values = {label: float(getattr(gap, which)) for label, gap in gaps.items()}
    total = sum(max(float(label_weights.get(label, 0.0)), 0.0) for label in values)
    if total <= 0:
        return float(np.mean(list(values.values()))) if values else math.nan
    return sum(max(float(label_weights.get(label, 0.0)), 0.0) * value for label, value in values.items()) / total

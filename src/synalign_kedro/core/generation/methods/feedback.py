"""``synalign_feedback``: SynAlign generation that, round by round, asks for what the pool lacks (issue 15).

SynAlign corrects its pool after generation (sec. 3.4: MMD weights, then resampling, which throws away what
is over-represented). LLMSynthor (``../shared/LLMSYNTHOR.md``) corrects *during* generation: each round it
measures where the synthetic data falls short of the target statistics and proposes records there. This
method does the second for text:

1. The real rows of each label are described by regions (:mod:`synalign_kedro.core.regions`): k-means
   clusters of their embeddings and word-count bins.
2. Round 0 is SynAlign's two-stage generation (eq. 6-7) over the tracker's demonstration batches, for
   ``feedback.first_round_share`` of ``n_samples``.
3. Each later round embeds the pool, computes every region's signed gap (real share - synthetic share) and
   spends the round's calls on the labels and regions with the largest positive gaps: the demonstrations of a
   call are the region's real rows, most uncertain first (the tracker's ``variance_at_selection``); its
   summary (stage 1) states the target length; and the prompt says what is missing
   (``prompts.feedback_guidance``: "texts of at most 9 words, about plot, acting").
4. It stops when ``n_samples`` rows are kept, when the token budget cannot pay for another call, after
   ``max_rounds``, or when ``patience`` rounds in a row improved neither the TVD over regions nor MMD^2 to the
   real rows it may see by more than ``min_improvement`` (a share of the best value so far: MMD^2's biased
   estimate drifts a little with the pool's size alone).

The stopping rule measures against ``real_train`` (what the method may see), not the held-out real part of
the evaluation: a held-out set that steers generation is no longer held out.

Token budget: calls are sent in waves of as many as the rest of the budget pays for at the mean cost of a
call of their kind so far (stage-1 summary or stage-2 samples, re-asks included; a kind's first call is sent
alone to learn it). When every call of a kind costs the same, the spend never exceeds the budget and stops
less than one call short of it; with a real LLM, the last wave can overshoot by what its calls cost above the
mean (the benchmark reports the actual spend). Tokens are counted per answer whether it came from the network
or the LLM cache (:attr:`TaskResult.tokens`), so a resumed run makes the same decisions, asks nothing twice and
reports the same spend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...llm_client import ChatTask, TaskResult
from ...metrics import median_heuristic_bandwidth, mmd_rbf
from ...regions import LabelRegions, RegionGap, fit_regions, gaps_by_label, weighted_tvd
from ..answers import distinct_rows
from ..config import GenerationConfigError
from ..context import GenerationContext
from ..planning import allocate_by_frequency, call_sizes
from ..prompts import attribute_key, render
from .synalign import Runner, samples_call, summarise_batches, summarised_attributes, two_stage_round

BUDGET_SPENT = "not sent: the token budget is spent"
TVD_PARTS = ("tvd", "tvd_clusters", "tvd_lengths")  # RegionGap's TVDs, each averaged over labels per round


@dataclass
class TokenBudget:
    """Tokens a method may spend (``limit=None``: no limit) and what a call of each kind has cost so far."""

    limit: int | None
    spent: int = 0
    spent_by_kind: dict[str, int] = field(default_factory=dict)
    calls_by_kind: dict[str, int] = field(default_factory=dict)

    def call_cost(self, kind: str) -> int | None:
        """The mean cost of a call of ``kind`` so far (re-asks included); None before the first."""
        calls = self.calls_by_kind.get(kind, 0)
        return math.ceil(self.spent_by_kind[kind] / calls) if calls else None

    def affordable(self, kind: str, wanted: int) -> int:
        """How many of ``wanted`` calls of ``kind`` may be sent now: as many as the rest of the budget pays
        for at the mean cost so far (the first call of a kind is sent alone: it shows what one costs)."""
        if self.limit is None:
            return wanted
        remaining = self.limit - self.spent
        cost = self.call_cost(kind)
        if remaining <= 0:
            return 0
        return min(wanted, 1 if cost is None else remaining // max(cost, 1))

    def spend(self, kind: str, tokens: int) -> None:
        self.spent += int(tokens)
        self.spent_by_kind[kind] = self.spent_by_kind.get(kind, 0) + int(tokens)
        self.calls_by_kind[kind] = self.calls_by_kind.get(kind, 0) + 1

    def runner(self, context: GenerationContext, kind: str) -> Runner:
        """:meth:`GenerationContext.run` in waves that fit the budget; tasks never sent come back failed with
        :data:`BUDGET_SPENT` (and are not recorded as failures: they were not asked)."""

        def run(tasks: list[ChatTask], stage: str) -> list[TaskResult]:
            results: list[TaskResult] = []
            pending = list(tasks)
            while pending and (wave_size := self.affordable(kind, len(pending))) > 0:
                wave, pending = pending[:wave_size], pending[wave_size:]
                for result in context.run(wave, stage):
                    self.spend(kind, result.tokens)
                    results.append(result)
            return results + [TaskResult(task.task_id, False, error=BUDGET_SPENT) for task in pending]

        return run


class PoolMeter:
    """Measures a pool against the real rows the method may see: the regions' gaps, their TVD and MMD^2
    (Gaussian kernel, bandwidth fixed once: the median distance among the real rows). Each distinct text is
    embedded once."""

    def __init__(self, context: GenerationContext, regions: dict[str, LabelRegions]) -> None:
        self.context, self.regions = context, regions
        self.real = np.asarray(context.real_embeddings, dtype=np.float64)
        self.bandwidth = median_heuristic_bandwidth(self.real, self.real[:0], device="cpu")
        self._vectors: dict[str, np.ndarray] = {}

    def measure(self, rows: list[dict]) -> tuple[dict[str, RegionGap], dict[str, float]]:
        texts = [row["text"] for row in rows]
        new = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if new:
            self._vectors.update(zip(new, np.asarray(self.context.embed(new), dtype=np.float64), strict=True))
        dim = self.real.shape[1]
        embeddings = np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, dim))
        gaps = gaps_by_label(self.regions, texts, [row["label"] for row in rows], embeddings)
        mmd2 = (
            mmd_rbf(self.real, embeddings, bandwidth=self.bandwidth, device="cpu") if len(texts) else math.nan
        )
        return gaps, {
            **{name: weighted_tvd(gaps, self.context.label_weights, name) for name in TVD_PARTS},
            "mmd2": mmd2,
        }


def _positive_or_shares(gap: np.ndarray, real_share: np.ndarray) -> dict[str, float]:
    """Weights for allocating calls among regions: the positive gaps, or the real shares when none is positive."""
    positive = np.clip(gap, 0.0, None)
    values = positive if positive.sum() > 0 else real_share
    return {str(i): float(v) for i, v in enumerate(values)}


def plan_round(
    regions: dict[str, LabelRegions],
    gaps: dict[str, RegionGap],
    kept_per_label: dict[str, int],
    target_per_label: dict[str, float],
    n_calls: int,
    round_index: int = 1,
) -> list[tuple[str, int, int]]:
    """``(label, cluster, length bin)`` of each call of a feedback round.

    Calls go to labels by their shortfall against the real label frequencies, then, within a label, to the
    clusters and to the length bins in proportion to their positive gaps (largest-remainder apportionment,
    :func:`allocate_by_frequency`; the real shares when no gap is positive), largest gaps first. Labels
    equally short are served in an order that moves on by ``n_calls`` each round: with more labels short
    than calls in a round (24 Amazon classes), every label gets its turn instead of the first alphabetically.
    """
    labels = sorted(regions)
    shortfall = {label: max(target_per_label.get(label, 0.0) - kept_per_label.get(label, 0), 0.0) for label in labels}
    if sum(shortfall.values()) <= 0:
        shortfall = {label: target_per_label.get(label, 0.0) for label in labels}
    start = (round_index - 1) * n_calls % len(labels)
    tie_order = labels[start:] + labels[:start]
    sequence = allocate_by_frequency(labels, shortfall, n_calls, tie_order)  # labels interleaved
    per_label = {}
    for label in set(sequence):
        n_label = sequence.count(label)
        region, gap = regions[label], gaps[label]
        clusters = _largest_first(_positive_or_shares(gap.cluster_gap, region.real_cluster_share), n_label)
        lengths = _largest_first(_positive_or_shares(gap.length_gap, region.real_length_share), n_label)
        per_label[label] = iter(zip(clusters, lengths, strict=True))
    # in the label sequence's order, so that a plan cut short by the token budget still serves every label
    return [(label, *next(per_label[label])) for label in sequence]


def within_budget(
    plan: list[tuple[str, int, int]], summarised: set[tuple[str, int]], budget: TokenBudget
) -> list[tuple[str, int, int]]:
    """The first calls of ``plan`` that the rest of the budget pays for at the mean costs so far: a samples
    call, plus a summary call when its region has none yet."""
    if budget.limit is None:
        return plan
    remaining = budget.limit - budget.spent
    summary_cost, samples_cost = budget.call_cost("stage1") or 0, budget.call_cost("stage2") or 0
    kept, summarised = [], set(summarised)
    for label, cluster, length in plan:
        cost = samples_cost + (summary_cost if (label, cluster) not in summarised else 0)
        if cost > remaining:
            break
        remaining -= cost
        summarised.add((label, cluster))
        kept.append((label, cluster, length))
    return kept


def _largest_first(weights: dict[str, float], n: int) -> list[int]:
    chosen = [int(name) for name in allocate_by_frequency(list(weights), weights, n)]
    return sorted(chosen, key=lambda i: (-weights[str(i)], i))


def demonstration_rank(context: GenerationContext) -> dict[str, float]:
    """Text -> the tracker's variance at selection of the batch that showed it (highest of several): the
    order in which the GP tracker ranks real rows (sec. 3.2); texts it never chose rank last."""
    rank: dict[str, float] = {}
    for row in context.demonstration_batches.itertuples():
        for text in row.texts:
            rank[str(text)] = max(rank.get(str(text), -math.inf), float(row.variance_at_selection))
    return rank


def synalign_feedback(context: GenerationContext) -> list[dict]:
    settings, config = context.config.feedback, context.config
    real = context.real_train
    if real is None or context.real_embeddings is None or context.embed is None:
        raise GenerationConfigError(
            "synalign_feedback needs real_train, its embeddings (real_train_embeddings) and an embedder"
        )
    if len(context.real_embeddings) != len(real):
        raise GenerationConfigError(
            f"real_train_embeddings has {len(context.real_embeddings)} rows but real_train has {len(real)}: "
            "re-run the embed_real_train node"
        )
    texts = real["text"].astype(str).tolist()
    regions = fit_regions(
        texts, real["label"].astype(str).tolist(), context.real_embeddings, settings.max_regions,
        settings.length_bins, config.seed,
    )  # fmt: skip
    budget, meter = TokenBudget(settings.token_budget), PoolMeter(context, regions)
    total_weight = sum(context.label_weights.values()) or 1.0
    target = {label: config.n_samples * context.label_weights.get(label, 0.0) / total_weight for label in regions}
    rank = demonstration_rank(context)
    asked = summarised_attributes(context)
    length_keys = [attribute_key(n) for n, m in context.prompts.computed_attributes.items() if m == "word_count"]

    # Round 0: SynAlign's two-stage generation (eq. 6-7) for the first share of the rows.
    first = max(1, round(settings.first_round_share * config.n_samples))
    rows = two_stage_round(
        context, call_sizes(first, config.n_per_call), "round0:",
        budget.runner(context, "stage1"), budget.runner(context, "stage2"),
    )  # fmt: skip
    summaries: dict[int, dict] = {}  # region summaries, asked once per region
    trace: list[dict] = []
    best = {"tvd": math.inf, "mmd2": math.inf}
    stale, stop_reason = 0, f"max_rounds={settings.max_rounds} reached"
    for round_index in range(settings.max_rounds + 1):
        kept = distinct_rows(rows)
        gaps, scores = meter.measure(kept)
        largest = max(
            ((float(g.cluster_gap.max(initial=0.0)), label) for label, g in gaps.items()), default=(0.0, "")
        )
        trace.append(
            {"round": round_index, "samples_kept": len(kept), "tokens_spent": budget.spent, **scores,
             "largest_cluster_gap": largest[0], "largest_gap_label": largest[1]}
        )  # fmt: skip
        improved = any(scores[name] < best[name] * (1.0 - settings.min_improvement) for name in best)
        best = {name: min(best[name], scores[name]) for name in best}
        stale = 0 if improved else stale + 1
        if len(kept) >= config.n_samples:
            stop_reason = "n_samples reached"
            break
        if budget.affordable("stage2", 1) == 0:
            stop_reason = "token budget spent"
            break
        if stale >= settings.patience:
            stop_reason = f"no improvement of TVD or MMD^2 for {stale} round(s)"
            break
        if round_index == settings.max_rounds:
            break
        new_rows, planned = _feedback_round(
            context, round_index + 1, regions, gaps, kept, target, rank, asked, length_keys, summaries, budget
        )
        if not planned:  # the rest of the budget pays for no samples call (with its region's summary)
            stop_reason = "token budget spent"
            break
        rows += new_rows
    context.extras.update(
        {
            "feedback": {
                "stop_reason": stop_reason,
                "token_budget": settings.token_budget,
                "tokens_spent": budget.spent,
                "trace": trace,
                "regions": {
                    label: {
                        "clusters": region.n_clusters,
                        "real_cluster_share": [round(float(v), 4) for v in region.real_cluster_share],
                        "length_bins": region.lengths.names(),
                        "keywords": [list(words) for words in region.keywords],
                    }
                    for label, region in regions.items()
                },
            },
            # metric histories (step = round) for MLflow (pipelines/tracking.py)
            **{
                f"feedback_{name}": [(row["round"], row[name]) for row in trace]
                for name in ("tvd", "mmd2", "tokens_spent", "samples_kept")
            },
        }
    )
    return rows


def _feedback_round(
    context: GenerationContext,
    round_index: int,
    regions: dict[str, LabelRegions],
    gaps: dict[str, RegionGap],
    kept: list[dict],
    target: dict[str, float],
    rank: dict[str, float],
    asked: list[str],
    length_keys: list[str],
    summaries: dict[int, dict],
    budget: TokenBudget,
) -> tuple[list[dict], int]:
    """One feedback round: the calls go where the gaps are (:func:`plan_round`), each after its region's
    summary (stage 1, asked once per region), with the gap as guidance. Returns the rows and the number of
    calls planned within the budget."""
    config = context.config
    rounds_left = config.feedback.max_rounds - round_index + 1
    n_round = math.ceil((config.n_samples - len(kept)) / rounds_left)
    sizes = call_sizes(n_round, config.n_per_call)
    kept_per_label: dict[str, int] = {}
    for row in kept:
        kept_per_label[row["label"]] = kept_per_label.get(row["label"], 0) + 1
    labels = sorted(regions)

    def region_key(label: str, cluster: int) -> int:
        return 1_000 * labels.index(label) + cluster

    summarised = {(labels[key // 1_000], key % 1_000) for key in summaries}
    plan = within_budget(
        plan_round(regions, gaps, kept_per_label, target, len(sizes), round_index), summarised, budget
    )
    sizes = sizes[: len(plan)]

    demonstrations: dict[int, list[str]] = {}
    for label, cluster, _ in plan:
        members = [str(context.real_train["text"].iloc[i]) for i in regions[label].members[cluster]]
        ordered = sorted(members, key=lambda text: -rank.get(text, -math.inf))  # stable: ties keep data order
        demonstrations[region_key(label, cluster)] = ordered[: config.max_demonstrations]
    new = {
        key: {"label": labels[key // 1_000], "texts": texts}
        for key, texts in demonstrations.items()
        if key not in summaries
    }
    if new:
        summaries.update(
            summarise_batches(
                context, new, asked, f"round{round_index}:stage1", budget.runner(context, "stage1"),
                f"r{round_index}:s1",
            )  # fmt: skip
        )
    calls = []
    for call_index, ((label, cluster, length), n) in enumerate(zip(plan, sizes, strict=True)):
        key = region_key(label, cluster)
        if key not in summaries:  # the region's summary failed or was not affordable
            continue
        region = regions[label]
        length_name = region.lengths.names()[length]
        summary = {**summaries[key], **dict.fromkeys(length_keys, length_name)}
        wanted = [] if region.lengths.n_bins == 1 else [f"texts of {length_name}"]
        if region.keywords[cluster]:
            wanted.append("about " + ", ".join(region.keywords[cluster]))
        guidance = render(context.prompts.feedback_guidance, guidance="; ".join(wanted) or "texts like the summary")
        calls.append(
            samples_call(
                context, f"{context.method}:r{round_index}:s2:{call_index}", label, n, summary,
                demonstrations[key], 20_000 + 1_000 * round_index + call_index, -1, guidance.rstrip(),
            )
        )  # fmt: skip
    stage = f"round{round_index}:stage2"
    return context.run_sample_calls(calls, stage, budget.runner(context, "stage2")), len(plan)

"""Pool assembly: one method's run (:data:`.methods.METHODS`) over the shared inputs, deduplicated and cut to
the budget, with its usage report; a run that kept too little fails here."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..llm_client import LLMClient
from ..variants import DEMONSTRATION_METHODS, EMBEDDING_METHODS
from .answers import distinct_rows
from .config import GenerationConfigError, GenerationShortfallError, MethodConfig, PromptTemplates
from .context import POOL_COLUMNS, GenerationContext
from .methods import METHODS
from .planning import call_sizes, dataset_labels, label_weights
from .prompts import dataset_context

logger = logging.getLogger(__name__)


def generate_pool(
    client: LLMClient,
    config: MethodConfig,
    prompts: PromptTemplates,
    profile: dict,
    real_train: pd.DataFrame,
    demonstration_batches: pd.DataFrame | None,
    real_embeddings: np.ndarray | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Generate ``config.n_samples`` synthetic rows with ``config.method``; returns (pool, usage report).

    The methods of ``EMBEDDING_METHODS`` also need ``real_embeddings`` (one row per row of ``real_train``) and
    ``embed`` (texts -> embeddings in the same space); their own report entries (e.g. the feedback trace) are
    added to the usage report.

    Failed calls (after ``max_retries`` re-asks) are recorded in ``usage["failures"]`` and the run goes on,
    so the pool may be smaller than asked; below ``config.min_kept_share`` of the budget it raises
    :class:`GenerationShortfallError` (method, counts, most common rejection). An unreachable endpoint raises
    :class:`~synalign_kedro.core.llm_client.LLMUnavailableError`; finished calls stay cached.
    """
    if not {"text", "label"} <= set(real_train.columns):
        raise GenerationConfigError("real_train needs columns 'text' and 'label'")
    method = config.method
    real_labels = real_train["label"].astype(str).tolist()
    labels = dataset_labels(profile, real_labels)
    attributes = [str(a) for a in (profile.get("attributes") or [])]
    if method in DEMONSTRATION_METHODS:
        if demonstration_batches is None:
            raise GenerationConfigError(f"{method} needs demonstration_batches")
        unknown = (
            sorted({str(x) for x in demonstration_batches["label"]} - labels.keys())
            if "label" in demonstration_batches
            else []
        )
        if unknown:
            raise GenerationConfigError(f"demonstration_batches has labels {unknown} unknown to the dataset")
    context = GenerationContext(
        client=client,
        config=config,
        prompts=prompts,
        profile=profile,
        labels=labels,
        label_weights=label_weights(real_labels),
        attributes=attributes,
        placeholders=dataset_context(profile, labels, attributes),
        sizes=call_sizes(config.n_samples, config.n_per_call),
        demonstration_batches=demonstration_batches if method in DEMONSTRATION_METHODS else None,
    )
    if method in EMBEDDING_METHODS:
        if real_embeddings is None or embed is None:
            raise GenerationConfigError(f"{method} needs real_train_embeddings and an embedder")
        context.real_train = real_train.reset_index(drop=True)
        context.real_embeddings = np.asarray(real_embeddings)
        context.embed = embed
    rows = METHODS[method](context)

    kept = distinct_rows(rows)
    duplicates = len(rows) - len(kept)
    pool = pd.DataFrame(kept, columns=POOL_COLUMNS).head(config.n_samples).reset_index(drop=True)
    pool["batch_id"] = pool["batch_id"].astype("int64")
    usage = context.usage
    report = {
        "method": method,
        "model": context.model,
        "n_samples_requested": config.n_samples,
        "n_samples_generated": int(len(pool)),
        "duplicates_dropped": duplicates,
        "label_counts": {str(k): int(v) for k, v in pool["label"].value_counts().sort_index().items()},
        **usage.as_dict(),
        "stages": context.stages,
        "failed_tasks": usage.failures,
        "failures": context.failures,
        **context.extras,
    }
    logger.info(
        "%s: %d/%d samples; %d calls (%d re-asks, %d transport retries), %d cache hits, %d failed tasks; "
        "%d prompt + %d completion tokens, %.1f tok/s, %.1f s",
        method, len(pool), config.n_samples, usage.calls, usage.reasks, usage.transport_retries,
        usage.cache_hits, usage.failures, usage.prompt_tokens, usage.completion_tokens,
        usage.tokens_per_second, usage.wall_seconds,
    )  # fmt: skip
    if usage.truncated:
        logger.warning(
            "%s: %d of %d answers were cut off at llm.max_tokens=%d; raise llm.max_tokens or lower "
            "generation.n_per_call (long texts need more tokens per call)",
            method, usage.truncated, usage.calls + usage.cache_hits, client.settings.max_tokens,
        )  # fmt: skip
    report["max_tokens"] = client.settings.max_tokens
    check_kept_share(report, config)
    return pool, report


def check_kept_share(report: dict, config: MethodConfig) -> None:
    """Raise :class:`GenerationShortfallError` when the pool holds fewer than ``min_kept_share`` of the
    requested samples, naming the method, the counts and the most common rejection reason."""
    kept, requested = report["n_samples_generated"], report["n_samples_requested"]
    if kept >= config.min_kept_share * requested:
        return
    reasons = Counter(_reason(failure["error"]) for failure in report["failures"])
    if reasons:
        reason, count = reasons.most_common(1)[0]
        why = f"most common rejection ({count} of {len(report['failures'])} failed calls): {reason}"
    elif report["duplicates_dropped"]:
        why = f"{report['duplicates_dropped']} generated samples were duplicates of others"
    else:
        why = "no call failed: the answers held fewer valid samples than asked"
    truncated = report.get("truncated", 0)
    cut_off = (
        f" {truncated} answers were cut off at llm.max_tokens={report.get('max_tokens')}: raise llm.max_tokens or "
        "lower generation.n_per_call."
        if truncated
        else ""
    )
    raise GenerationShortfallError(
        f"generation method {report['method']!r} kept {kept} of {requested} requested samples, fewer than "
        f"generation.min_kept_share={config.min_kept_share:g} of them; {why}.{cut_off} Check the LLM endpoint "
        f"(model {report['model']!r}) or raise llm.max_retries (re-asks per call)"
    )


def _reason(error: str | None) -> str:
    text = " ".join(str(error or "unknown error").split())
    return text if len(text) <= 200 else text[:197] + "..."

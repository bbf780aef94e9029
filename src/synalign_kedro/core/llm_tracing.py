"""Each completed LLM call as an MLflow 3 trace, linked to the active run.

The MLflow 3 UI opens an experiment on its GenAI overview (traces, token usage, latency, errors) and shows a
run's traces in the run's "Traces" tab. The generation step (SynAlign sec. 3.3, eq. 6-7, and the baselines of
sec. 4) makes its LLM calls through one client; that client calls :func:`trace_llm_call` once per completed
call (a network answer or a cache replay, each re-ask being a call of its own) so those panels describe the
generation: prompt messages, answer, prompt/completion tokens, latency, cache hit, validation outcome, and the
method and stage the call belongs to.

What a trace holds (one root span of type ``CHAT_MODEL``, in the OpenAI chat format the UI renders as a chat):

- inputs ``{"messages": [...], "model": ..., **sampling}``; outputs a chat completion
  (``choices[0].message.content`` is the answer, ``usage`` the token counts);
- span attributes ``mlflow.chat.tokenUsage`` (summed by MLflow into the trace's token usage),
  ``mlflow.llm.model``, ``mlflow.message.format = "openai"``, and ``synalign.*`` (method, stage, cache_hit,
  validation, latency_s, call_id);
- trace tags ``synalign.method``, ``synalign.stage``, ``synalign.cache_hit`` (``"true"``/``"false"``),
  ``synalign.validation``, searchable with ``mlflow.search_traces(filter_string="tags.`synalign.method` = 'x'")``;
- the start and end times of the call (the span is back-dated by its latency), so latency panels are real;
- status ``ERROR`` only when the call itself failed (``error`` given); an answer that failed validation is a
  completed call with ``synalign.validation = "invalid"``.

Linking: MLflow records the latest active run of the process (any thread) as the trace's source run and puts
the trace in that run's experiment; ``run_id`` names a run explicitly. Without an active run (unit tests of the
client, a notebook) nothing is recorded, so no stray ``mlflow.db`` appears in the working directory.

Tracing never fails the LLM call: any error inside is logged once per process at WARNING (then at DEBUG) and
the function returns ``None``. No kedro import: the share of calls to trace comes from the caller
(``sample_share``, the ``llm.trace_sample_share`` parameter).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

VALIDATION_OUTCOMES = ("valid", "invalid", "not_validated")
TAG_PREFIX = "synalign."
_warned = False


def sampled(share: float, key: str) -> bool:
    """Whether the call identified by ``key`` is in the traced share.

    Deterministic (a hash of ``key`` mapped to [0, 1) compared with ``share``): the same calls are traced in a
    re-run, whatever order concurrent calls finish in, and about ``share`` of distinct calls are traced."""
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def _split_name(name: str, method: str | None, stage: str | None) -> tuple[str, str]:
    head, sep, tail = name.partition(":")
    return (method or head), (stage or (tail if sep else ""))


def _active_run_id() -> str | None:
    """The run a trace started now would be linked to: this thread's active run, else the latest active run of
    any thread (the LLM client sends calls from worker threads; MLflow's tracing links those the same way, with
    the private ``_get_latest_active_run``, which is why it is used here, guarded)."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        try:
            from mlflow.tracking.fluent import _get_latest_active_run

            run = _get_latest_active_run()
        except Exception:  # a later MLflow without it: only this thread's run is seen
            run = None
    return run.info.run_id if run is not None else None


@functools.lru_cache(maxsize=64)
def _experiment_of(run_id: str) -> str:
    """The experiment of a run (one tracking-store query per run, not per call)."""
    import mlflow

    return mlflow.get_run(run_id).info.experiment_id


def trace_llm_call(
    *,
    name: str,
    messages: Sequence[Mapping[str, Any]],
    answer: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    latency_s: float,
    cache_hit: bool,
    validation: str,
    model: str | None = None,
    sampling: Mapping[str, Any] | None = None,
    error: str | None = None,
    method: str | None = None,
    stage: str | None = None,
    call_id: str | None = None,
    sample_share: float = 1.0,
    run_id: str | None = None,
    end_time_ns: int | None = None,
) -> str | None:
    """Record one completed LLM call as an MLflow trace; return its trace id, or ``None`` when not recorded.

    Args:
        name: what the call was for, ``"<method>:<stage>"`` (the client's batch description, e.g.
            ``"synalign:samples"``); ``method`` and ``stage`` override the two parts.
        messages: the chat messages sent (OpenAI format, ``[{"role": ..., "content": ...}]``).
        answer: the answer text (from the endpoint or the cache).
        prompt_tokens, completion_tokens: the usage the endpoint reported (``None`` when unknown).
        latency_s: seconds the call took (the original call's seconds for a cache replay is fine too; the
            span is back-dated by this much from ``end_time_ns``, default now).
        cache_hit: the answer came from the call cache.
        validation: ``"valid"``, ``"invalid"`` (the answer failed the task's validator) or
            ``"not_validated"``.
        model: the model name; sampling: temperature, seed, max_tokens, ... (recorded with the inputs).
        error: the call failed (transport error, refused request): the trace gets status ``ERROR``.
        call_id: the task id (or cache key) of the call; also the sampling key with ``name``.
        sample_share: share of calls traced, in [0, 1] (1.0: every call); see :func:`sampled`.
        run_id: the MLflow run to link to; default the active run. Without one, nothing is recorded.
    """
    global _warned
    try:
        if validation not in VALIDATION_OUTCOMES:
            raise ValueError(f"validation must be one of {VALIDATION_OUTCOMES}, got {validation!r}")
        if not 0.0 <= float(sample_share) <= 1.0:
            raise ValueError(f"sample_share must be in [0, 1], got {sample_share!r}")
        key = f"{name}\x1f{call_id or ''}\x1f{json.dumps(list(messages), sort_keys=True, default=str)}\x1f{answer}"
        if not sampled(float(sample_share), key):
            return None
        run_id = run_id or _active_run_id()
        if run_id is None:
            return None
        return _record(
            name=name,
            messages=messages,
            answer=answer,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency_s,
            cache_hit=cache_hit,
            validation=validation,
            model=model,
            sampling=sampling,
            error=error,
            method_stage=_split_name(name, method, stage),
            call_id=call_id,
            run_id=run_id,
            end_time_ns=end_time_ns,
        )
    except Exception as failure:  # tracing must never fail the LLM call
        level = logging.DEBUG if _warned else logging.WARNING
        _warned = True
        logger.log(
            level, "LLM call %r not traced in MLflow: %s", name, failure, exc_info=level == logging.DEBUG
        )
        return None


def _record(
    *,
    name: str,
    messages: Sequence[Mapping[str, Any]],
    answer: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    latency_s: float,
    cache_hit: bool,
    validation: str,
    model: str | None,
    sampling: Mapping[str, Any] | None,
    error: str | None,
    method_stage: tuple[str, str],
    call_id: str | None,
    run_id: str,
    end_time_ns: int | None,
) -> str | None:
    import mlflow
    from mlflow.entities import SpanStatusCode, SpanType
    from mlflow.tracing.constant import SpanAttributeKey, TraceMetadataKey

    method, stage = method_stage
    end_ns = end_time_ns if end_time_ns is not None else time.time_ns()
    start_ns = end_ns - max(int(float(latency_s) * 1e9), 0)
    usage: dict[str, int] = {}
    if prompt_tokens is not None:
        usage["input_tokens"] = int(prompt_tokens)
    if completion_tokens is not None:
        usage["output_tokens"] = int(completion_tokens)
    if usage:
        usage["total_tokens"] = sum(usage.values())
    tags = {
        f"{TAG_PREFIX}method": method,
        f"{TAG_PREFIX}stage": stage,
        f"{TAG_PREFIX}cache_hit": "true" if cache_hit else "false",
        f"{TAG_PREFIX}validation": validation,
    }
    experiment_id = _experiment_of(run_id)
    span = mlflow.start_span_no_context(
        name,
        span_type=SpanType.CHAT_MODEL,
        inputs={"messages": [dict(m) for m in messages], "model": model, **dict(sampling or {})},
        attributes={
            SpanAttributeKey.MESSAGE_FORMAT: "openai",
            **({SpanAttributeKey.MODEL: model} if model else {}),
            f"{TAG_PREFIX}method": method,
            f"{TAG_PREFIX}stage": stage,
            f"{TAG_PREFIX}cache_hit": bool(cache_hit),
            f"{TAG_PREFIX}validation": validation,
            f"{TAG_PREFIX}latency_s": float(latency_s),
            **({f"{TAG_PREFIX}call_id": call_id} if call_id else {}),
        },
        tags=tags,
        metadata={TraceMetadataKey.SOURCE_RUN: run_id},
        experiment_id=experiment_id,
        start_time_ns=start_ns,
    )
    if usage:
        span.set_attribute(SpanAttributeKey.CHAT_USAGE, usage)
    completion = {
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": usage.get("total_tokens"),
        },
    }
    if error:
        span.set_attribute(f"{TAG_PREFIX}error", error)
    span.end(
        outputs=completion,
        status=SpanStatusCode.ERROR if error else SpanStatusCode.OK,
        end_time_ns=end_ns,
    )
    trace_id = getattr(span, "trace_id", None)
    # A sampled-out or disabled span is a no-op span with a placeholder id: report it as not recorded.
    return trace_id if trace_id and not trace_id.startswith("MLFLOW_NO_OP") else None


def flush() -> None:
    """Wait until every trace recorded so far is written (MLflow writes them from a background queue; a
    process flushes at exit anyway). Call before reading traces back in the same process."""
    try:
        import mlflow

        mlflow.flush_trace_async_logging()
    except Exception as failure:
        logger.debug("flushing MLflow traces failed: %s", failure)

"""core.llm_tracing: LLM calls recorded as MLflow 3 traces in a real (tmp) sqlite tracking store, read back
with mlflow.search_traces."""

from __future__ import annotations

import json
import logging
import threading

import mlflow
import pytest
from mlflow.tracing.constant import SpanAttributeKey, TraceMetadataKey

from synalign_kedro.core import llm_tracing
from synalign_kedro.core.llm_tracing import flush, sampled, trace_llm_call

MESSAGES = [
    {"role": "system", "content": "You write movie reviews."},
    {"role": "user", "content": "Write one positive review as JSON."},
]
ANSWER = '{"samples": ["A warm, funny film."]}'


def call(**overrides):
    arguments = dict(
        name="synalign:samples",
        messages=MESSAGES,
        answer=ANSWER,
        prompt_tokens=31,
        completion_tokens=12,
        latency_s=1.5,
        cache_hit=False,
        validation="valid",
        model="smollm2-135m-instruct",
        sampling={"temperature": 0.8, "seed": 42},
        call_id="task-1",
    )
    arguments.update(overrides)
    return trace_llm_call(**arguments)


@pytest.fixture(scope="module")
def tracking_store(tmp_path_factory):
    """One sqlite tracking store for the module (creating its tables takes seconds); restores the URI after."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path_factory.mktemp('tracing') / 'mlflow.db'}")
    yield
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def store(tracking_store, request):
    """A fresh experiment of that store for each test."""
    experiment_id = mlflow.create_experiment(request.node.name)
    yield experiment_id
    while mlflow.active_run():
        mlflow.end_run()


def traces_of(run_id: str):
    flush()
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    return mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list")


def test_a_call_becomes_a_trace_of_the_active_run_with_its_tags_and_attributes(store):
    with mlflow.start_run(experiment_id=store) as run:
        trace_id = call()
        call(
            name="simprompt:samples",
            answer="not json",
            cache_hit=True,
            validation="invalid",
            call_id="task-2",
        )
    assert trace_id is not None
    traces = traces_of(run.info.run_id)
    assert len(traces) == 2
    trace = next(t for t in traces if t.info.trace_id == trace_id)
    assert trace.info.experiment_id == store
    assert trace.info.trace_metadata[TraceMetadataKey.SOURCE_RUN] == run.info.run_id
    assert trace.info.state.value == "OK"
    tags = trace.info.tags
    assert tags["synalign.method"] == "synalign" and tags["synalign.stage"] == "samples"
    assert tags["synalign.cache_hit"] == "false" and tags["synalign.validation"] == "valid"
    assert tags["mlflow.traceName"] == "synalign:samples"
    # MLflow sums the span's token usage into the trace's
    assert json.loads(trace.info.trace_metadata[TraceMetadataKey.TOKEN_USAGE]) == {
        "input_tokens": 31, "output_tokens": 12, "total_tokens": 43,
    }  # fmt: skip
    (span,) = trace.data.spans
    assert span.span_type == "CHAT_MODEL"
    assert span.inputs["messages"] == MESSAGES and span.inputs["temperature"] == 0.8
    assert span.outputs["choices"][0]["message"]["content"] == ANSWER
    assert span.get_attribute(SpanAttributeKey.MODEL) == "smollm2-135m-instruct"
    assert span.get_attribute("synalign.cache_hit") is False
    assert span.get_attribute("synalign.call_id") == "task-1"
    # the span is back-dated by the call's latency
    assert (span.end_time_ns - span.start_time_ns) == pytest.approx(1.5e9, abs=1e6)
    assert trace.info.execution_duration == pytest.approx(1500, abs=2)

    other = next(t for t in traces if t.info.trace_id != trace_id)
    assert other.info.tags["synalign.method"] == "simprompt"
    assert (
        other.info.tags["synalign.cache_hit"] == "true"
        and other.info.tags["synalign.validation"] == "invalid"
    )

    found = mlflow.search_traces(
        locations=[store], filter_string="tags.`synalign.validation` = 'invalid'", return_type="list"
    )
    assert [t.info.trace_id for t in found] == [other.info.trace_id]


def test_a_failed_call_is_an_error_trace(store):
    with mlflow.start_run(experiment_id=store) as run:
        call(
            answer="",
            completion_tokens=None,
            error="request refused: context too long",
            validation="not_validated",
        )
    (trace,) = traces_of(run.info.run_id)
    assert trace.info.state.value == "ERROR"
    assert trace.data.spans[0].get_attribute("synalign.error") == "request refused: context too long"
    assert json.loads(trace.info.trace_metadata[TraceMetadataKey.TOKEN_USAGE]) == {
        "input_tokens": 31, "output_tokens": 0, "total_tokens": 31,
    }  # fmt: skip


def test_calls_from_worker_threads_link_to_the_run_of_the_main_thread(store):
    with mlflow.start_run(experiment_id=store) as run:
        ids = []
        workers = [
            threading.Thread(target=lambda i=i: ids.append(call(call_id=f"thread-{i}"))) for i in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert None not in ids
    traces = traces_of(run.info.run_id)
    assert sorted(t.info.trace_id for t in traces) == sorted(ids)


def test_an_explicit_run_id_wins_and_no_run_means_no_trace(store, tmp_path):
    with mlflow.start_run(experiment_id=store) as first:
        pass
    assert call() is None  # no active run: nothing recorded (no stray store in the working directory)
    assert call(run_id=first.info.run_id) is not None
    assert len(traces_of(first.info.run_id)) == 1


def test_the_sampled_share_is_deterministic_and_matches_the_hash_rule(store):
    keys = [f"key-{i}" for i in range(2000)]
    chosen = [k for k in keys if sampled(0.25, k)]
    assert chosen == [k for k in keys if sampled(0.25, k)]  # same calls every time
    assert 0.22 < len(chosen) / len(keys) < 0.28
    assert all(sampled(1.0, k) for k in keys[:50]) and not any(sampled(0.0, k) for k in keys[:50])

    with mlflow.start_run(experiment_id=store) as run:
        recorded = [call(call_id=f"task-{i}", sample_share=0.5) for i in range(20)]
        assert call(sample_share=0.0) is None
    kept = [trace_id for trace_id in recorded if trace_id is not None]
    assert 0 < len(kept) < 20
    assert sorted(t.info.trace_id for t in traces_of(run.info.run_id)) == sorted(kept)


def test_tracing_failures_never_reach_the_caller(store, monkeypatch, caplog):
    monkeypatch.setattr(llm_tracing, "_warned", False)
    with mlflow.start_run(experiment_id=store):
        with caplog.at_level(logging.WARNING, logger="synalign_kedro.core.llm_tracing"):
            assert call(validation="maybe") is None
            assert call(sample_share=2.0) is None
            assert call(run_id="no-such-run") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # logged once at WARNING, then at DEBUG
    assert "validation must be one of ('valid', 'invalid', 'not_validated'), got 'maybe'" in warnings[0]

"""Generation methods (SynAlign §3.3, baselines §4.1) against the scripted server, and their pure helpers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from synalign_kedro.core.generation import (
    POOL_COLUMNS,
    GenerationConfigError,
    MethodConfig,
    SampleSet,
    allocate_by_frequency,
    call_sizes,
    generate_pool,
    merge_prompts,
    plan_demonstration_calls,
    render,
    summary_model,
    word_count_description,
)
from synalign_kedro.core.generation.answers import sample_validator, samples_json_schema
from synalign_kedro.core.generation.context import SampleCall, pool_rows
from synalign_kedro.core.llm_cache import LLMCallCache
from synalign_kedro.core.llm_client import ChatTask, LLMClient, LLMSettings, TaskResult, cache_identity
from synalign_kedro.core.llm_server import Endpoint

from .scripted_server import ScriptedLLMServer

CONF = Path(__file__).resolve().parents[2] / "conf" / "base"


def load_conf(*names: str) -> dict:
    merged: dict = {}
    for name in names:
        merged.update(yaml.safe_load((CONF / name).read_text()))
    return merged


@pytest.fixture(scope="module")
def sst2_conf():
    conf = load_conf(
        "parameters_prompts_default.yml", "parameters_prompts_sst2.yml", "parameters_dataset_sst2.yml"
    )
    return merge_prompts(conf["prompts_default"], conf["prompts_sst2"]), {
        **conf["dataset_sst2"],
        "name": "sst2",
    }


@pytest.fixture(scope="module")
def real_train(sst2_train):
    return sst2_train.head(400).reset_index(drop=True)


@pytest.fixture(scope="module")
def batches(real_train):
    rows = []
    for batch_id in range(6):
        label = ["positive", "negative"][batch_id % 2]
        texts = real_train[real_train.label == label].text.iloc[batch_id * 5 : batch_id * 5 + 5].tolist()
        rows.append(
            {"batch_id": batch_id, "label": label, "row_ids": [f"r{batch_id}_{i}" for i in range(5)], "texts": texts,
             "variance_at_selection": 1.0 - 0.1 * batch_id, "round": batch_id}
        )  # fmt: skip
    return pd.DataFrame(rows)


def client_for(server, tmp_path, **overrides) -> LLMClient:
    settings = LLMSettings.model_validate(
        {"model": "scripted", "base_url": server.url, "structured_output": "json_object", "timeout": 5,
         "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "cache_dir": str(tmp_path), "show_progress": False, **overrides}
    )  # fmt: skip
    identity = cache_identity(settings)
    return LLMClient(
        settings,
        identity,
        lambda: Endpoint(server.url, "scripted", identity),
        LLMCallCache(tmp_path / "c.sqlite"),
    )


# ----------------------------------------------------------------------------- pure helpers
@pytest.mark.parametrize(("n_samples", "per_call"), [(64, 8), (10, 4), (3, 8), (8, 8)])
def test_call_sizes_spend_exactly_the_budget(n_samples, per_call):
    sizes = call_sizes(n_samples, per_call)
    assert sum(sizes) == n_samples and max(sizes) <= per_call and len(sizes) == -(-n_samples // per_call)


@pytest.mark.parametrize(
    ("weights", "n_calls"),
    [({"a": 3, "b": 1}, 8), ({"a": 1, "b": 1, "c": 1}, 7), ({"x": 5, "y": 0}, 3), ({"a": 0, "b": 0}, 4)],
)
def test_allocation_is_largest_remainder_apportionment(weights, n_calls):
    labels = list(weights)
    sequence = allocate_by_frequency(labels, weights, n_calls)
    counts = Counter(sequence)
    total = sum(weights.values())
    for label in labels:  # brute force: each label gets floor or ceil of its exact share
        share = n_calls * (weights[label] / total if total else 1 / len(labels))
        assert int(share) <= counts[label] <= int(share) + 1
    assert len(sequence) == n_calls
    # interleaved: the first len(labels with share >= 1) calls are distinct labels
    firsts = [label for label in labels if counts[label] > 0]
    assert set(sequence[: len(firsts)]) == set(firsts)


def test_demonstration_plan_follows_variance_and_cycles(batches):
    plan = plan_demonstration_calls(batches, {"positive": 1.0, "negative": 1.0}, 8)
    ids = [row["batch_id"] for row in plan]
    positives = [b for b in ids if b % 2 == 0]
    assert positives == [0, 2, 4, 0]  # highest variance first, then cycled
    assert Counter(row["label"] for row in plan) == {"positive": 4, "negative": 4}


def test_demonstration_plan_rejects_bad_input(batches):
    with pytest.raises(GenerationConfigError, match="texts"):
        plan_demonstration_calls(batches.drop(columns="texts"), {}, 2)
    with pytest.raises(GenerationConfigError, match="empty"):
        plan_demonstration_calls(batches.iloc[:0], {}, 2)


def test_word_count_is_computed_not_asked():
    assert (
        word_count_description(["one two three", "a b c d e f g"]) == "about 5 words (between 3 and 7 words)"
    )


def test_summary_model_validates_attributes():
    model = summary_model(["movie_genres", "topics"])
    ok = model.model_validate({"movie_genres": ["drama", "comedy"], "topics": "acting"}).model_dump()
    assert ok == {"movie_genres": "drama; comedy", "topics": "acting"}
    with pytest.raises(ValidationError, match="topics"):
        model.model_validate({"movie_genres": "drama"})
    with pytest.raises(ValidationError, match="placeholder"):
        model.model_validate({"movie_genres": "...", "topics": "<topics of the examples>"})


def test_sample_set_rejects_copies_duplicates_placeholders_and_too_few():
    context = {"n": 2, "min_words": 2, "demonstrations": {"a dull movie"}}
    assert SampleSet.model_validate(
        {"samples": [" A  fresh take ", "witty and warm", "x y z"]}, context=context
    ).samples == [
        "A fresh take",
        "witty and warm",
    ]
    bracketed = SampleSet.model_validate(
        {"samples": ["<a witty and warm film>", "<second text>", "fine words"]}, context=context
    )
    assert bracketed.samples == [
        "a witty and warm film",
        "fine words",
    ]  # brackets dropped, placeholder rejected
    for samples, reason in [
        (["A dull movie!", "new words here", "more new words"], "verbatim"),
        (["same text here", "same text here"], "repeats"),
        (["<text 1>", "real words here"], "format example"),
        (["just one sample"], "only 1 usable"),
        (["", "ok words"], "empty"),
    ]:
        with pytest.raises(ValidationError, match=reason):
            SampleSet.model_validate({"samples": samples}, context=context)
    lenient = SampleSet.model_validate(
        {"samples": ["a dull movie", "new words", "new words"]}, context={**context, "lenient": True}
    )
    assert lenient.samples == ["new words"]


def test_render_names_unknown_placeholders():
    assert render("write {n} {domain}", n=2, domain="reviews") == "write 2 reviews"
    with pytest.raises(GenerationConfigError, match="labl"):
        render("write {labl}", label="x")


@pytest.mark.parametrize("dataset", ["sst2", "ag_news", "amazon_category"])
def test_shipped_prompt_files_load_and_render(dataset):
    conf = load_conf(
        "parameters_prompts_default.yml",
        f"parameters_prompts_{dataset}.yml",
        f"parameters_dataset_{dataset}.yml",
    )
    prompts = merge_prompts(conf["prompts_default"], conf[f"prompts_{dataset}"])
    attributes = conf[f"dataset_{dataset}"]["attributes"]
    assert set(prompts.computed_attributes) <= set(attributes)
    assert set(prompts.attrprompt_values) <= set(attributes)
    values = dict(domain="d", description="d", labels="a, b", attributes="- x", label="a", label_description="a",
                  n=3, examples="[]", summary="{}", attributes_to_summarise="- x", json_format="{}", attribute="x",
                  attribute_values="- x: y")  # fmt: skip
    for name in ("stage1", "stage2", "one_stage", "simprompt", "attrprompt", "attribute_values"):
        assert "{" not in render(getattr(prompts, name), **values).replace("{}", "")


# ----------------------------------------------------------------------------- methods end to end
@pytest.mark.parametrize("method", ["simprompt", "attrprompt", "synalign_one_stage", "synalign"])
def test_each_method_produces_the_budget_with_the_pool_contract(
    method, sst2_conf, real_train, batches, tmp_path
):
    prompts, profile = sst2_conf
    with ScriptedLLMServer() as server:
        client = client_for(server, tmp_path)
        config = MethodConfig(method=method, n_samples=10, n_per_call=4)
        pool, report = generate_pool(client, config, prompts, profile, real_train, batches)
        calls = len(server.calls)
    assert list(pool.columns) == POOL_COLUMNS and len(pool) == 10
    assert set(pool.label) <= {"positive", "negative"} and set(pool.method) == {method}
    assert pool.synthetic_id.is_unique and pool.text.str.len().gt(0).all()
    assert report["n_samples_generated"] == 10 and report["failures"] == [] and report["calls"] == calls
    assert pool.raw_response.map(lambda r: json.loads(r)["samples"]).map(len).ge(1).all()
    if method in ("simprompt", "attrprompt"):
        assert set(pool.batch_id) == {-1}
        assert calls == 3  # ceil(10 / 4) generation calls, attrprompt values are configured for SST-2
    else:
        assert set(pool.batch_id) <= set(batches.batch_id)
        for row in pool.itertuples():  # the label is the demonstration batch's
            assert batches.set_index("batch_id").loc[row.batch_id, "label"] == row.label
    if method == "synalign":
        assert calls == 3 + 3  # one stage-1 summary per distinct batch used, then 3 stage-2 calls
        summary = json.loads(pool.summary.iloc[0])
        texts = batches.set_index("batch_id").loc[pool.batch_id.iloc[0], "texts"]
        assert summary["review_length"] == word_count_description(texts)  # computed, not the LLM's
        assert set(summary) == {"movie_genres", "topics", "language_habits", "review_length"}
    if method == "attrprompt":
        combination = json.loads(pool.summary.iloc[0])
        assert set(combination) == {"movie genres", "topics", "language habits", "review length"}


def test_attrprompt_generates_values_for_unconfigured_attributes(sst2_conf, real_train, tmp_path):
    prompts, profile = sst2_conf
    profile = {**profile, "attributes": [*profile["attributes"], "camera work"]}
    with ScriptedLLMServer() as server:
        pool, report = generate_pool(
            client_for(server, tmp_path),
            MethodConfig(method="attrprompt", n_samples=4, n_per_call=4),
            prompts,
            profile,
            real_train,
            None,
        )
        assert len(server.calls) == 2
        assert "camera work" in server.calls[0]["messages"][-1]["content"]
    assert "camera work" in json.loads(pool.summary.iloc[0])


def test_failures_are_recorded_and_what_succeeded_is_kept(sst2_conf, real_train, batches, tmp_path):
    prompts, profile = sst2_conf
    # the first call (stage 1 of batch 1: labels are planned in sorted order) fails twice (max_retries=1)
    with ScriptedLLMServer(script=["garbage", "garbage"]) as server:
        client = client_for(server, tmp_path, max_retries=1)
        config = MethodConfig(method="synalign", n_samples=16, n_per_call=4)
        pool, report = generate_pool(client, config, prompts, profile, real_train, batches)
    assert [(f["stage"], f["task_id"]) for f in report["failures"]] == [("stage1", "synalign:s1:1")]
    # batch 1's stage-2 call moves to batch 3, the other summarised negative batch: the budget is kept
    assert len(pool) == 16 and set(pool.batch_id) == {0, 2, 3} and report["reasks"] == 1
    assert (pool[pool.batch_id == 3].label == "negative").all()


def test_a_label_without_any_summary_loses_its_calls(sst2_conf, real_train, batches, tmp_path):
    prompts, profile = sst2_conf
    with ScriptedLLMServer(script=["garbage", "garbage"]) as server:
        client = client_for(server, tmp_path, max_retries=1)
        config = MethodConfig(method="synalign", n_samples=8, n_per_call=4)
        pool, report = generate_pool(client, config, prompts, profile, real_train, batches)
    assert len(report["failures"]) == 1 and len(pool) == 4 and set(pool.label) == {"positive"}


def test_partial_answers_are_salvaged_after_the_last_reask(sst2_conf, real_train, tmp_path):
    prompts, profile = sst2_conf
    with ScriptedLLMServer(script=["few", "few"]) as server:
        client = client_for(server, tmp_path, max_retries=1)
        pool, report = generate_pool(
            client,
            MethodConfig(method="simprompt", n_samples=8, n_per_call=4),
            prompts,
            profile,
            real_train,
            None,
        )
    assert len(report["failures"]) == 1 and len(pool) == 1 + 4
    assert "only one scripted sample here" in set(pool.text)


def test_salvage_keeps_the_distinct_samples_of_every_rejected_answer():
    """Two answers that each repeat a sample: their distinct samples together, each text once, at most n."""
    validate, salvage = sample_validator(4, 1, ["a copied demonstration"])
    task = ChatTask("t0", [{"role": "user", "content": "write 4"}], "samples", samples_json_schema(4), validate)
    call = SampleCall(task, "positive", 3, "", task.messages, salvage, 4)
    first = json.dumps({"samples": ["Warm and funny.", "Warm and funny!", "A bore.", "a copied demonstration"]})
    second = json.dumps({"samples": ["Slow, then great.", "a bore", "Too long by half.", "Too long by half."]})
    result = TaskResult("t0", False, None, [first, second], "sample 4 repeats another sample")
    rows = pool_rows(result, call, "synalign", "m", allow_salvage=True)
    # latest answer first; "a bore" and "Warm and funny!" repeat kept texts, the demonstration is never kept;
    # the cap of 4 leaves out nothing here, one more distinct text would be
    assert [row["text"] for row in rows] == ["Slow, then great.", "a bore", "Too long by half.", "Warm and funny."]
    assert [row["raw_response"] for row in rows] == [second, second, second, first]
    assert pool_rows(result, call, "synalign", "m", allow_salvage=False) == []
    capped = SampleCall(task, "positive", 3, "", task.messages, salvage, 2)
    assert len(pool_rows(result, capped, "synalign", "m", allow_salvage=True)) == 2


def test_copied_demonstrations_are_reasked(sst2_conf, real_train, batches, tmp_path):
    prompts, profile = sst2_conf
    with ScriptedLLMServer(script=["copy"]) as server:
        client = client_for(server, tmp_path)
        pool, report = generate_pool(
            client,
            MethodConfig(method="synalign_one_stage", n_samples=4, n_per_call=4),
            prompts,
            profile,
            real_train,
            batches,
        )
        assert "verbatim" in server.calls[1]["messages"][-1]["content"]
    demos = {t for texts in batches.texts for t in texts}
    assert report["reasks"] == 1 and not set(pool.text) & demos


def test_unknown_labels_and_missing_columns_are_clear_errors(sst2_conf, real_train, batches, tmp_path):
    prompts, profile = sst2_conf
    with ScriptedLLMServer() as server:
        client = client_for(server, tmp_path)
        bad = batches.assign(label="neutral")
        with pytest.raises(GenerationConfigError, match="neutral"):
            generate_pool(
                client, MethodConfig(method="synalign", n_samples=4), prompts, profile, real_train, bad
            )
        with pytest.raises(GenerationConfigError, match="'text' and 'label'"):
            generate_pool(
                client,
                MethodConfig(method="simprompt", n_samples=4),
                prompts,
                profile,
                real_train.rename(columns={"text": "t"}),
                None,
            )


def test_profile_without_labels_uses_the_real_labels(sst2_conf, real_train, tmp_path):
    prompts, profile = sst2_conf
    with ScriptedLLMServer() as server:
        pool, _ = generate_pool(
            client_for(server, tmp_path),
            MethodConfig(method="simprompt", n_samples=8, n_per_call=4),
            prompts,
            {**profile, "labels": {}},
            real_train,
            None,
        )
    assert set(pool.label) == {"positive", "negative"}


def test_synalign_sends_a_batchs_samples_calls_as_soon_as_its_summary_is_in(
    sst2_conf, real_train, batches, tmp_path
):
    """Stage 2 of a batch does not wait for the other batches' summaries (one LLM run, no stage barrier); the
    pool is the same as one request at a time, where the requests keep the order stage 1 then stage 2."""
    prompts, profile = sst2_conf
    config = MethodConfig(method="synalign", n_samples=24, n_per_call=4)
    first_text = batches.loc[0, "texts"][0]

    def is_samples(body) -> bool:
        return '"samples"' in body["messages"][-1]["content"]

    def route(body):  # batch 0's summary takes 2 s
        return "stall" if not is_samples(body) and first_text in body["messages"][-1]["content"] else None

    pools, reports, orders = {}, {}, {}
    for concurrency in (1, 4):
        with ScriptedLLMServer(route=route, stall_seconds=2.0) as server:
            client = client_for(server, tmp_path / str(concurrency), max_concurrency=concurrency, timeout=30)
            pools[concurrency], reports[concurrency] = generate_pool(
                client, config, prompts, profile, real_train, batches
            )
            orders[concurrency] = [is_samples(body) for body in server.answered]
    n_summaries = orders[1].count(False)
    assert orders[1] == [False] * n_summaries + [True] * 6  # 6 stage-2 calls after every summary
    assert orders[4].index(False, orders[4].index(True)) > 0  # a summary (batch 0's) answered after samples
    pd.testing.assert_frame_equal(pools[1].drop(columns="model"), pools[4].drop(columns="model"))  # model: the URL
    assert len(pools[4]) == 24 and set(pools[4].batch_id) <= set(batches.batch_id)
    for report in reports.values():  # usage per stage, though the stages overlap
        assert report["stages"]["stage1"]["tasks"] == n_summaries and report["stages"]["stage2"]["tasks"] == 6
        assert report["calls"] == n_summaries + 6 and report["failures"] == []

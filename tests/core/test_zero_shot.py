"""The LLM zero-shot classifier (SynAlign table 1's "LLM zero-shot" row): prompts, validation, failures."""

from __future__ import annotations

import pytest

from synalign_kedro.core.zero_shot import classify_zero_shot, labels_validator, zero_shot_tasks
from tests.core.scripted_server import ScriptedLLMServer
from tests.core.test_llm_client import make_client

PROFILE = {
    "domain": "movie review",
    "description": "short movie reviews",
    "labels": {"positive": "a positive opinion", "negative": "a negative opinion"},
}


def test_validator_maps_labels_case_insensitively_and_names_what_is_wrong():
    validate = labels_validator(["positive", "negative"], 3)
    assert validate({"labels": [" Positive", "negative", "NEGATIVE "]}) == ["positive", "negative", "negative"]
    assert validate(["positive", "positive", "negative"]) == ["positive", "positive", "negative"]
    with pytest.raises(ValueError, match="2 labels for 3 texts"):
        validate({"labels": ["positive", "negative"]})
    with pytest.raises(ValueError, match=r"unknown labels \['neutral'\]"):
        validate({"labels": ["positive", "neutral", "negative"]})
    with pytest.raises(ValueError, match='expected {"labels"'):
        validate({"answer": "positive"})


def test_tasks_batch_the_texts_in_order_with_the_label_set_in_prompt_and_schema():
    texts = [f"text number {i}" for i in range(7)]
    tasks = zero_shot_tasks(texts, ["positive", "negative"], PROFILE, batch_size=3)
    assert [task.items for task in tasks] == [3, 3, 1]
    assert [task.task_id for task in tasks] == ["zero_shot:0", "zero_shot:3", "zero_shot:6"]
    prompt = tasks[1].messages[-1]["content"]
    assert "1. text number 3\n2. text number 4\n3. text number 5" in prompt
    assert "- positive: a positive opinion" in prompt and "movie review" in prompt
    labels = tasks[2].json_schema["properties"]["labels"]
    assert labels["items"]["enum"] == ["positive", "negative"] and labels["minItems"] == labels["maxItems"] == 1
    with pytest.raises(ValueError, match="batch_size"):
        zero_shot_tasks(texts, ["positive"], PROFILE, batch_size=0)


def test_classify_returns_one_label_per_text_and_none_for_a_batch_that_failed(tmp_path):
    # first batch: garbage, then garbage on both re-asks -> its 3 texts are unanswered; the rest answer
    with ScriptedLLMServer(script=["garbage", "garbage", "garbage"]) as server:
        client, cache = make_client(server, tmp_path, max_concurrency=1)
        texts = [f"text number {i}" for i in range(7)]
        predictions, usage = classify_zero_shot(client, texts, ["positive", "negative"], PROFILE, batch_size=3)
        cache.close()
    assert predictions[:3] == [None, None, None]
    assert predictions[3:] == ["positive", "negative", "positive", "positive"]
    assert usage.calls == 5  # 3 tries of the first batch, one call for each of the other two

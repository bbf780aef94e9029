"""The discrepancy-feedback method (issue 15): regions and gaps on constructed cases, the round plan, the token
budget, and the loop end to end against a scripted LLM that writes what the prompt says is missing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from synalign_kedro.core.generation import MethodConfig, generate_pool, merge_prompts
from synalign_kedro.core.generation.config import GenerationConfigError
from synalign_kedro.core.generation.methods.feedback import TokenBudget, plan_round, within_budget
from synalign_kedro.core.llm_client import TaskResult
from synalign_kedro.core.regions import (
    LengthBins,
    RegionGap,
    cluster_count,
    fit_regions,
    gaps_by_label,
    weighted_tvd,
)

from .scripted_server import ScriptedLLMServer
from .test_generation import client_for, load_conf


# ----------------------------------------------------------------------------- regions and gaps
def test_cluster_count_follows_the_data_size():
    assert [cluster_count(n, 8) for n in (1, 2, 8, 32, 128, 5000)] == [1, 1, 2, 4, 8, 8]
    assert cluster_count(32, 3) == 3


def test_length_bins_are_real_quantiles_and_say_their_range():
    bins = LengthBins.from_counts([1, 1, 2, 2, 5, 5, 9, 9], 2)
    assert bins.upper == (3,) and bins.names() == ["at most 3 words", "more than 3 words"]
    assert bins.assign([1, 3, 4, 100]).tolist() == [0, 0, 1, 1]
    three = LengthBins.from_counts(list(range(1, 31)), 3)
    assert three.upper == (10, 20) and three.names() == ["at most 10 words", "11-20 words", "more than 20 words"]
    assert LengthBins.from_counts([4, 4, 4], 3).names() == ["any length"]  # no edge below the largest count


def test_region_assignment_and_signed_gap_on_a_constructed_case():
    rng = np.random.default_rng(0)
    near_origin = rng.normal(0, 0.1, size=(6, 2))
    far = rng.normal(10, 0.1, size=(2, 2))
    texts = ["one", "one", "two words", "two words", "five words in this text", "five words in this text",
             "nine words are in this text and no more", "nine words are in this text and no more"]  # fmt: skip
    regions = fit_regions(texts, ["a"] * 8, np.vstack([near_origin, far]), max_regions=2, length_bins=2, seed=0)
    region = regions["a"]
    far_cluster = int(region.assign_clusters(np.array([[10.0, 10.0]]))[0])
    assert region.real_cluster_share[far_cluster] == pytest.approx(0.25)
    assert sorted(region.members[far_cluster].tolist()) == [6, 7]
    # four synthetic one-word texts near the origin: the far cluster and the long bin are missing
    gap = region.gap(rng.normal(0, 0.1, size=(4, 2)), ["short"] * 4)
    assert gap.cluster_gap[far_cluster] == pytest.approx(0.25) and gap.cluster_gap.sum() == pytest.approx(0.0)
    assert gap.length_gap.tolist() == pytest.approx([-0.5, 0.5])
    assert (gap.tvd_clusters, gap.tvd_lengths, gap.tvd) == pytest.approx((0.25, 0.5, 0.375))
    # no synthetic row: every gap is the real share
    empty = region.gap(np.zeros((0, 2)), [])
    assert empty.cluster_gap.tolist() == pytest.approx(region.real_cluster_share.tolist())


def test_gaps_by_label_and_the_weighted_tvd():
    points = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    regions = fit_regions(["x y", "x y", "x y", "x y"], ["a", "a", "b", "b"], points, length_bins=1)
    gaps = gaps_by_label(regions, ["x y"], ["a"], np.array([[0.0, 0.0]]))
    assert gaps["a"].tvd == 0.0 and gaps["b"].n_synthetic == 0
    both_missing = RegionGap(np.array([1.0]), np.array([1.0]), 0)
    assert weighted_tvd({"a": gaps["a"], "b": both_missing}, {"a": 3.0, "b": 1.0}) == pytest.approx(0.25 * 0.5)


def test_distinctive_words_name_each_cluster():
    texts = ["alpha harbour story"] * 4 + ["beta mountain song"] * 4
    points = np.array([[0.0, 0.0]] * 4 + [[1.0, 1.0]] * 4) + np.arange(8)[:, None] * 1e-3
    region = fit_regions(texts, ["a"] * 8, points, max_regions=2, length_bins=1)["a"]
    beta = int(region.assign_clusters(np.array([[1.0, 1.0]]))[0])
    assert region.keywords[beta] == ("beta", "mountain", "song")
    assert region.keywords[1 - beta] == ("alpha", "harbour", "story")


# ----------------------------------------------------------------------------- round plan and budget
def test_a_round_spends_its_calls_where_the_positive_gaps_are():
    points = np.array([[0.0, 0.0]] * 3 + [[9.0, 9.0]] + [[0.0, 0.0]] * 4) + np.arange(8)[:, None] * 1e-3
    regions = fit_regions(["w w"] * 8, ["a"] * 4 + ["b"] * 4, points, max_regions=2, length_bins=1)
    a_far = int(regions["a"].assign_clusters(np.array([[9.0, 9.0]]))[0])
    gaps = {
        "a": RegionGap(np.where(np.arange(2) == a_far, 0.25, -0.25), np.zeros(1), 4),
        "b": RegionGap(np.zeros(regions["b"].n_clusters), np.zeros(1), 4),
    }
    # label a is 3 rows short of its target, b is full: every call goes to a's missing cluster
    plan = plan_round(regions, gaps, {"a": 1, "b": 4}, {"a": 4.0, "b": 4.0}, 3)
    assert plan == [("a", a_far, 0)] * 3


def test_labels_equally_short_take_turns_across_rounds():
    points = np.arange(12, dtype=float)[:, None] * np.ones((1, 2))
    labels = [f"class{i:02d}" for i in range(6) for _ in range(2)]
    regions = fit_regions(["w w"] * 12, labels, points, max_regions=1, length_bins=1)
    gaps = {label: RegionGap(np.zeros(1), np.zeros(1), 0) for label in regions}
    target = dict.fromkeys(regions, 4.0)
    served = [
        [label for label, _, _ in plan_round(regions, gaps, {}, target, 2, round_index)] for round_index in (1, 2, 3)
    ]
    assert served == [["class00", "class01"], ["class02", "class03"], ["class04", "class05"]]


def test_a_round_is_cut_to_what_the_budget_pays_summaries_included():
    budget = TokenBudget(limit=1000, spent=500)
    budget.spend("stage1", 100)  # 400 left; a summary costs 100, a samples call 150
    budget.spend("stage2", 150)
    budget.spent = 600
    plan = [("a", 0, 0), ("b", 0, 0), ("a", 0, 1), ("b", 1, 0)]
    # a/0 is summarised already: 150; b/0 needs its summary: 250; a/0 again: 150 > 0 left
    assert within_budget(plan, {("a", 0)}, budget) == plan[:2]
    assert within_budget(plan, {("a", 0)}, TokenBudget(limit=None)) == plan


def test_token_budget_sends_what_fits_and_learns_the_cost_of_a_kind():
    budget = TokenBudget(limit=100)
    assert budget.affordable("stage2", 10) == 1  # the first call of a kind is a probe
    budget.spend("stage2", 30)
    assert budget.affordable("stage2", 10) == 2  # 70 left, 30 per call
    budget.spend("stage2", 60)
    assert budget.call_cost("stage2") == 45 and budget.affordable("stage2", 10) == 0
    assert TokenBudget(limit=None).affordable("stage1", 7) == 7


def test_the_budget_runner_never_sends_what_the_budget_cannot_pay():
    class Context:
        def __init__(self):
            self.sent = []

        def run(self, tasks, stage):
            self.sent += [task.task_id for task in tasks]
            return [TaskResult(task.task_id, True, ["x"], tokens=25) for task in tasks]

    class Task:
        def __init__(self, task_id):
            self.task_id = task_id

    context, budget = Context(), TokenBudget(limit=110)
    results = budget.runner(context, "stage2")([Task(i) for i in range(8)], "stage2")
    assert context.sent == [0, 1, 2, 3] and budget.spent == 100  # probe, then three more, then 10 tokens left
    assert [r.ok for r in results] == [True] * 4 + [False] * 4 and "token budget" in results[-1].error


# ----------------------------------------------------------------------------- the loop, scripted LLM
REAL_TEXTS = [f"alpha story about the harbour number {i}" for i in range(4)] + [
    f"beta song about the mountain number {i}" for i in range(4)
]


def embed(texts):
    """A stand-in embedder for one test: texts that mention "beta" on one side, all others on the other."""
    return np.array([[0.0, 1.0] if "beta" in t else [1.0, 0.0] for t in texts]) + np.array(
        [[1e-3 * (hash(t) % 7), 0.0] for t in texts]
    )


@pytest.fixture()
def feedback_inputs():
    prompts = merge_prompts(load_conf("parameters_prompts_default.yml")["prompts_default"], None)
    profile = {"name": "toy", "domain": "text", "labels": {"pos": "positive", "neg": "negative"},
               "attributes": ["topics"]}  # fmt: skip
    real = pd.DataFrame({"text": REAL_TEXTS * 2, "label": ["pos"] * 8 + ["neg"] * 8})
    batches = pd.DataFrame(
        [{"batch_id": b, "label": label, "texts": REAL_TEXTS[:3], "row_ids": ["r"] * 3,
          "variance_at_selection": 1.0 - b / 10, "round": b} for b, label in enumerate(["pos", "neg"])]
    )  # fmt: skip
    return prompts, profile, real, batches, embed(real["text"].tolist())


def run_feedback(server, tmp_path, inputs, **feedback):
    prompts, profile, real, batches, real_embeddings = inputs
    config = MethodConfig(
        method="synalign_feedback", n_samples=16, n_per_call=2, min_kept_share=0.0,
        feedback={"max_rounds": 2, "length_bins": 1, "max_regions": 2, **feedback},
    )  # fmt: skip
    return generate_pool(client_for(server, tmp_path), config, prompts, profile, real, batches, real_embeddings, embed)


def test_the_gap_falls_round_by_round_when_the_llm_writes_what_is_missing(feedback_inputs, tmp_path):
    with ScriptedLLMServer(default="follow") as server:
        pool, report = run_feedback(server, tmp_path, feedback_inputs)
        prompts = [" ".join(m["content"] for m in call["messages"]) for call in server.calls]
    trace = report["feedback"]["trace"]
    # round 0 (SynAlign two-stage) writes only "alpha"-side texts; every later call asks for the beta cluster
    assert [row["round"] for row in trace] == [0, 1, 2]
    assert [row["tvd"] for row in trace] == pytest.approx([0.25, 0.25 / 3, 0.0])
    assert trace[0]["mmd2"] > trace[1]["mmd2"] > trace[2]["mmd2"]
    assert [row["samples_kept"] for row in trace] == [8, 12, 16] and len(pool) == 16
    assert report["feedback"]["stop_reason"] == "n_samples reached"
    assert sum("too few of this kind: about beta, mountain, song" in p for p in prompts) == 4
    assert pool.text.str.contains("beta").sum() == 8
    assert report["feedback_tvd"] == [(0, trace[0]["tvd"]), (1, trace[1]["tvd"]), (2, trace[2]["tvd"])]
    assert report["feedback"]["tokens_spent"] == report["prompt_tokens"] + report["completion_tokens"]
    assert set(report["stages"]) == {"round0:stage1", "round0:stage2", "round1:stage1", "round1:stage2",
                                     "round2:stage2"}  # fmt: skip  # the region's summary is asked once


def test_an_llm_that_ignores_the_guidance_stops_the_loop_by_patience(feedback_inputs, tmp_path):
    with ScriptedLLMServer(default="ok") as server:
        _, report = run_feedback(server, tmp_path, feedback_inputs, max_rounds=5)
    trace = report["feedback"]["trace"]
    assert len(trace) == 2 and trace[1]["tvd"] == pytest.approx(trace[0]["tvd"])
    assert report["feedback"]["stop_reason"].startswith("no improvement")


@pytest.mark.parametrize("limit", [120, 150, 200])
def test_the_token_budget_is_honoured_and_a_resumed_run_spends_the_same(feedback_inputs, tmp_path, limit):
    with ScriptedLLMServer(default="follow") as server:
        pool, report = run_feedback(server, tmp_path, feedback_inputs, token_budget=limit)
        sent = len(server.calls)
        again, report_again = run_feedback(server, tmp_path, feedback_inputs, token_budget=limit)
        assert len(server.calls) == sent  # everything replayed from the cache, nothing asked twice
    spent = report["feedback"]["tokens_spent"]
    assert spent == report["prompt_tokens"] + report["completion_tokens"] <= limit
    # every stage-2 call of the scripted server costs about the same: the loop stops less than one call short
    assert limit - spent < max(call_tokens(server)), "stopped although another call would have fitted"
    assert report["feedback"]["stop_reason"] == "token budget spent"
    assert report_again["feedback"]["tokens_spent"] == spent and again.equals(pool)


def call_tokens(server) -> list[int]:
    """What each answered call cost (the scripted server's usage: 10 prompt tokens + len(answer) // 4)."""
    from .scripted_server import following_answer

    return [10 + len(following_answer(body)) // 4 for body in server.answered]


def test_missing_embeddings_are_a_clear_error(feedback_inputs, tmp_path):
    prompts, profile, real, batches, real_embeddings = feedback_inputs
    config = MethodConfig(method="synalign_feedback", n_samples=4)
    with ScriptedLLMServer() as server:
        client = client_for(server, tmp_path)
        with pytest.raises(GenerationConfigError, match="real_train_embeddings"):
            generate_pool(client, config, prompts, profile, real, batches)
        with pytest.raises(GenerationConfigError, match="has 3 rows but real_train has 16"):
            generate_pool(client, config, prompts, profile, real, batches, real_embeddings[:3], embed)
    assert math.isfinite(real_embeddings.sum())

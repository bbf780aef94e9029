"""LLMSynthor's loop: plan validation and repair, re-asks through the project's LLM client, sampling inside the
proposals, the Theorem-1 setting with a scripted LLM, and resume after a kill (LLMSYNTHOR.md §1.4-§1.7)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from synalign_kedro.core.llm_client import ChatAnswer, LLMClient, LLMSettings, LLMUsage, TaskResult
from synalign_kedro.core.llm_server import Endpoint
from synalign_kedro.core.structured.prompts import Proposal, plan_validator, rescale_counts
from synalign_kedro.core.structured.sampling import sample_batch, sample_proposal
from synalign_kedro.core.structured.statistics import target_from_table
from synalign_kedro.core.structured.synthor import SynthorConfig, batch_sizes, run_llmsynthor
from synalign_kedro.core.structured.variables import load_variables

VARIABLES = load_variables(
    [
        {"name": "age", "type": "integer", "range": [18, 90]},
        {"name": "price", "type": "numeric", "range": [0, 2000]},
        {"name": "mode", "type": "categorical", "categories": ["bike", "car", "transit"]},
    ]
)


def plan(**proposals) -> dict:
    return {"n_proposals": len(proposals), **proposals}


GOOD = {"reason": "fill", "proposal": {"age": [20, 30], "price": [10, 50], "mode": "bike"}, "num": 5}


class FakeClient:
    """Stands in for LLMClient in one unit test: answers each task with ``answer(task)`` and validates it the
    way the client does (no re-asks here; those are tested against the real client below)."""

    identity = "fake"

    def __init__(self, answer, fail_at: int | None = None):
        self.answer, self.fail_at, self.prompts = answer, fail_at, []

    def run(self, tasks, description=""):
        results = []
        for task in tasks:
            if self.fail_at is not None and task.task_id.endswith(f":{self.fail_at}"):
                raise KeyboardInterrupt("killed")
            self.prompts.append(task.messages[-1]["content"])
            try:
                results.append(TaskResult(task.task_id, True, task.validate(self.answer(task))))
            except ValueError as error:
                results.append(TaskResult(task.task_id, False, error=str(error)))
        return results, LLMUsage(tasks=len(tasks))


def test_out_of_domain_values_are_repaired_or_dropped_as_documented():
    validate = plan_validator(VARIABLES, n_proposals=5)
    result = validate(
        plan(
            proposal1={"reason": "r", "proposal": {"age": [40, 10], "price": 150, "mode": "BIKE", "colour": "red"}, "num": 3},
            proposal2={"reason": "r", "proposal": {"age": {"min": 80, "max": 120}, "price": [-50, 20], "mode": "car"}, "num": 2},
            proposal3={"reason": "r", "proposal": {"age": [20, 30], "price": [10, 50], "mode": "walk"}, "num": 4},
            proposal4={"reason": "r", "proposal": {"age": [20, 30], "mode": "car"}, "num": 4},
            proposal5={"reason": "r", "proposal": {"age": [200, 300], "price": [10, 50], "mode": "car"}, "num": 4},
            proposal6=GOOD,
        )
    )
    first, second = result.proposals
    assert first.values == {"age": (18.0, 40.0), "price": (150.0, 150.0), "mode": "bike"}  # reordered, clipped; scalar
    assert second.values == {"age": (80.0, 90.0), "price": (0.0, 20.0), "mode": "car"}
    assert result.dropped == 4  # walk, missing price, age outside the domain, and the 6th proposal
    assert "kept the first 5 of 6 proposals" in result.repairs
    assert "proposal1: dropped unknown keys ['colour']" in result.repairs
    assert "proposal1: mode 'BIKE' mapped to 'bike'" in result.repairs
    assert "proposal2: price range [-50.0, 20.0] clipped to [0.0, 20.0]" in result.repairs
    assert any(r.startswith("proposal3: dropped, mode='walk' is not one of") for r in result.repairs)
    assert "proposal4: dropped, missing variable 'price'" in result.repairs
    assert "proposal5: dropped, age range [200.0, 300.0] is outside [18, 90]" in result.repairs
    # the paper's skeleton shows "proposal" as a string: a JSON string of the object is accepted
    as_string = validate(plan(proposal1={**GOOD, "proposal": json.dumps(GOOD["proposal"])}))
    assert as_string.proposals[0].values["mode"] == "bike"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ([1, 2], "expected a JSON object"),
        ({"n_proposals": 1}, 'no "proposal1" key'),
        (plan(proposal1={**GOOD, "num": 0}), "no usable proposal: proposal1: dropped"),
        (plan(proposal1={**GOOD, "proposal": {**GOOD["proposal"], "mode": "walk"}}), "no usable proposal"),
    ],
)
def test_unusable_plans_raise_for_a_reask(answer, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plan_validator(VARIABLES, 5)(answer)


def test_malformed_and_out_of_domain_plans_are_reasked_through_the_project_client(tmp_path):
    """The real LLMClient's re-ask loop with our validator: garbage, then an out-of-domain plan, then a good one."""
    settings = LLMSettings(model="scripted", base_url="http://127.0.0.1:9/v1", max_retries=2, cache_dir=str(tmp_path), show_progress=False)
    from synalign_kedro.core.llm_cache import LLMCallCache

    client = LLMClient(settings, "scripted", lambda: Endpoint("http://127.0.0.1:9/v1", "scripted", "scripted"), LLMCallCache(tmp_path / "c.sqlite"))
    answers = iter(["Sure, here it is!", json.dumps(plan(proposal1={**GOOD, "proposal": {**GOOD["proposal"], "mode": "walk"}})), json.dumps(plan(proposal1=GOOD))])
    seen: list[list[dict]] = []

    def request(state, messages, sampling, stop_check=None):
        seen.append(messages)
        return ChatAnswer(next(answers), 0, 0)

    client._request = request  # the HTTP transport is not under test here (tests/core/test_llm_client.py is)
    target = target_from_table(pd.DataFrame({"age": [20, 30, 40, 50], "price": [1.0, 5, 9, 400], "mode": ["bike", "car", "car", "transit"]}), VARIABLES)
    result = run_llmsynthor(client, target, SynthorConfig(n_records=6, n_iterations=1, copula="given"))
    assert len(result.records) == 6 and result.trace["reasks"].tolist() == [2]
    assert "no usable proposal: proposal1: dropped, mode='walk'" in seen[2][-1]["content"]
    assert result.plans[0]["source"] == "llm"


def test_sampling_stays_inside_the_proposed_ranges_and_categories():
    rng = np.random.default_rng(0)
    proposal = Proposal({"age": (20.5, 23.2), "price": (10.0, 12.5), "mode": "car"}, 7)
    records = sample_proposal(proposal, 500, VARIABLES, rng)
    assert set(records["mode"]) == {"car"}
    assert records["price"].between(10.0, 12.5).all()
    assert set(records["age"]) == {21.0, 22.0, 23.0}  # integers inside the range, all reached
    degenerate = sample_proposal(Proposal({"age": (20.2, 20.4), "price": (5.0, 5.0), "mode": "bike"}, 1), 3, VARIABLES, rng)
    assert degenerate["age"].tolist() == [20.0] * 3 and degenerate["price"].tolist() == [5.0] * 3
    batch, counts = sample_batch([proposal, Proposal({"age": (60, 70), "price": (0, 1), "mode": "bike"}, 21)], 10, VARIABLES, rng)
    assert counts == [3, 7] and len(batch) == 10 and (batch["mode"] == "bike").sum() == 7


def test_rescaled_counts_use_largest_remainders():
    assert rescale_counts([1, 1, 1], 10) == [4, 3, 3]
    assert rescale_counts([5, 3, 2], 20) == [10, 6, 4]
    assert rescale_counts([2, 1], 1) == [1, 0]
    assert batch_sizes(10, 3) == [4, 3, 3]


CELL = re.compile(r"\((\w+), (\w+)\) \+([\d.]+)%")


def largest_gap_answer(task) -> dict:
    """A scripted LLM: one proposal per under-represented joint cell of the guidance, largest gap first,
    ``num`` proportional to the gap."""
    text = task.messages[-1]["content"]
    joint = text.split("Joint Guidance:\n")[1].split("\nMarginal Guidance:")[0]
    out: dict = {}
    for k, (size, mode, gap) in enumerate(CELL.findall(joint), start=1):
        out[f"proposal{k}"] = {"reason": "gap", "proposal": {"size": size, "mode": mode}, "num": max(1, round(1000 * float(gap)))}
    return {"n_proposals": len(out), **out}


@pytest.mark.parametrize("seed", [0, 1])
def test_scripted_largest_gap_llm_makes_the_discrepancy_contract_as_in_theorem_1(seed):
    """Theorem 1 (§1.5): with η_t = b/(n+b), the discrepancy contracts by (1 − η_t) per step.

    The first batch (the empty table: Δ = target) lands on the target up to rounding. The second batch is half
    the data and, append-only, can go only to under-represented cells, so it overshoots: the theorem's
    unbiased-batch assumption fails there. From then on the discrepancy falls monotonically, each step by at
    least the factor (1 − η_t).
    """
    variables = load_variables(
        [{"name": "size", "type": "categorical", "categories": ["S", "M", "L", "XL"]}, {"name": "mode", "type": "categorical", "categories": ["bike", "car", "transit"]}]
    )
    rng = np.random.default_rng(seed)
    real = pd.DataFrame({"size": rng.choice(["S", "M", "L", "XL"], 997, p=[0.4, 0.3, 0.2, 0.1]), "mode": rng.choice(["bike", "car", "transit"], 997, p=[0.6, 0.3, 0.1])})
    target = target_from_table(real, variables, joints=[["size", "mode"]])
    config = SynthorConfig(n_records=2000, n_iterations=5, n_proposals=12, copula="given", top_k_joint=12, percent_digits=4)
    result = run_llmsynthor(FakeClient(largest_gap_answer), target, config)
    curve = result.trace["discrepancy_l1"].to_numpy()
    n = result.trace["n_records"].to_numpy()
    assert len(result.records) == 2000 and curve[0] < 0.01
    assert np.all(np.diff(curve[1:]) < 0), curve
    eta = np.diff(n[1:]) / n[2:]
    assert np.all(curve[2:] <= (1 - eta) * curve[1:-1] + 1e-12), curve


def test_a_killed_run_resumes_at_its_iteration_with_the_same_records(tmp_path):
    rng = np.random.default_rng(1)
    real = pd.DataFrame({"age": rng.integers(18, 91, 300), "price": rng.uniform(0, 2000, 300), "mode": rng.choice(["bike", "car", "transit"], 300)})
    target = target_from_table(real, VARIABLES, joints=[["age", "mode"]])
    config = SynthorConfig(n_records=60, n_iterations=5, copula="given", on_failed_plan="greedy")

    def answer(task):  # deterministic in the prompt, as a cached LLM is
        return plan(proposal1=GOOD, proposal2={**GOOD, "proposal": {"age": [40, 90], "price": [100, 2000], "mode": "car"}, "num": len(task.messages[-1]["content"]) % 7 + 1})

    uninterrupted = run_llmsynthor(FakeClient(answer), target, config, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run_llmsynthor(FakeClient(answer, fail_at=4), target, config, tmp_path / "b")
    resumed_client = FakeClient(answer)
    resumed = run_llmsynthor(resumed_client, target, config, tmp_path / "b")
    assert len(resumed_client.prompts) == 2  # iterations 4 and 5 only
    assert resumed.report["resumed_at"] == [3]
    pd.testing.assert_frame_equal(resumed.records, uninterrupted.records)
    assert resumed.trace["discrepancy_l1"].tolist() == uninterrupted.trace["discrepancy_l1"].tolist()


def test_a_failed_plan_defers_its_batch_or_falls_back_to_the_greedy_plan():
    rng = np.random.default_rng(2)
    real = pd.DataFrame({"age": rng.integers(18, 91, 100), "price": rng.uniform(0, 2000, 100), "mode": rng.choice(["bike", "car", "transit"], 100)})
    target = target_from_table(real, VARIABLES)
    calls = iter([{"n_proposals": 0}, plan(proposal1=GOOD), {"n_proposals": 0}])
    deferred = run_llmsynthor(FakeClient(lambda task: next(calls)), target, SynthorConfig(n_records=30, n_iterations=3, copula="given"))
    assert deferred.trace["batch"].tolist() == [0, 20, 0] and len(deferred.records) == 20
    assert deferred.report["failed_plans"] == 2
    greedy = run_llmsynthor(FakeClient(lambda task: {}), target, SynthorConfig(n_records=30, n_iterations=3, copula="given", on_failed_plan="greedy"))
    assert len(greedy.records) == 30 and set(greedy.trace["plan_source"]) == {"greedy_fallback"}


def test_copula_groups_are_validated_and_their_tables_computed_from_the_reference():
    rng = np.random.default_rng(4)
    real = pd.DataFrame({"age": rng.integers(18, 91, 100), "price": rng.uniform(0, 2000, 100), "mode": rng.choice(["bike", "car", "transit"], 100)})
    target = target_from_table(real, VARIABLES, joints=[["age", "mode"]])

    def answer(task):
        if task.task_id == "llmsynthor:copula":
            return {"1": ["Price", "MODE"], "2": ["age", "nonsense"], "3": ["mode", "age", "price"]}
        return plan(proposal1=GOOD)

    client = FakeClient(answer)
    result = run_llmsynthor(client, target, SynthorConfig(n_records=10, n_iterations=1))
    assert result.report["copula"]["groups"] == [["price", "mode"], ["age", "price", "mode"]]
    # the superset group replaces both smaller tables; the copula prompt saw only aggregates
    assert result.report["joints"] == [["age", "price", "mode"]]
    assert "Macro-Statistics" in client.prompts[0] and "%" in client.prompts[0]

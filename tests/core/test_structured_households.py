"""Nested records (households of 2-5 persons): validation/repair of nested proposals, sampling, rules, the loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synalign_kedro.core.llm_client import LLMUsage, TaskResult
from synalign_kedro.core.structured.households import (
    example_population,
    nested_validator,
    rejection,
    run_household_synthor,
    sample_households,
    targets,
)

ADULT = {"age": [30, 50], "race": "White", "education": "Bachelor", "employment": "Employed", "income": [30000, 60000]}
CHILD = {"age": [6, 12], "race": "White", "education": "Elementary", "employment": "Under 16", "income": [0, 0]}
HOUSEHOLD = {"housing_tenure": "Owned", "householder_type": "Couple", "num_vehicles": [1, 2]}


class FakeClient:
    identity = "fake"

    def __init__(self, answer):
        self.answer, self.prompts = answer, []

    def run(self, tasks, description=""):
        out = []
        for task in tasks:
            self.prompts.append(task.messages[-1]["content"])
            try:
                out.append(TaskResult(task.task_id, True, task.validate(self.answer(task))))
            except ValueError as error:
                out.append(TaskResult(task.task_id, False, error=str(error)))
        return out, LLMUsage(tasks=len(tasks))


def test_nested_proposals_are_repaired_or_dropped():
    validate = nested_validator(5)
    proposals, notes = validate(
        {
            "proposal1": {"household": HOUSEHOLD, "members": [ADULT, ADULT, CHILD, CHILD, CHILD, CHILD], "num": 3},
            "proposal2": {"household": {**HOUSEHOLD, "housing_tenure": "Leased"}, "members": [ADULT, ADULT], "num": 2},
            "proposal3": {"household": {**HOUSEHOLD, "householder_type": "couple"}, "members": [ADULT, {**CHILD, "race": "Martian"}], "num": 2},
        }
    )
    assert len(proposals) == 1 and len(proposals[0].members) == 5
    assert "proposal1: kept the first 5 of 6 members" in notes
    assert any(n.startswith("proposal2.household: dropped, housing_tenure='Leased'") for n in notes)
    assert "proposal3.household: householder_type 'couple' mapped to 'Couple'" in notes
    assert "proposal3: dropped, needs a valid household and 2-5 valid members" in notes
    with pytest.raises(ValueError, match="no usable proposal"):
        validate({"proposal1": {"household": HOUSEHOLD, "members": [ADULT], "num": 1}})


def test_sampled_households_follow_their_specs_and_member_counts():
    proposals, _ = nested_validator(5)({"proposal1": {"household": HOUSEHOLD, "members": [ADULT, ADULT, CHILD], "num": 1}, "proposal2": {"household": {**HOUSEHOLD, "householder_type": "Single Female"}, "members": [ADULT, CHILD], "num": 1}})
    households, persons = sample_households(proposals, 10, np.random.default_rng(0))
    assert len(households) == 10 and households["household_id"].is_unique
    sizes = persons.groupby("household_id").size()
    assert (sizes == households.set_index("household_id")["num_persons"]).all()
    assert households["num_vehicles"].isin([1.0, 2.0]).all()
    assert persons.loc[persons["education"] == "Elementary", "age"].between(6, 12).all()
    assert persons.loc[persons["education"] == "Bachelor", "income"].between(30000, 60000).all()
    assert rejection(households, persons)["household_rejection"] == 0.0


def test_rules_reject_a_household_for_its_own_or_a_member_fault():
    households = pd.DataFrame({"household_id": [0, 1, 2], "housing_tenure": ["Owned"] * 3, "householder_type": ["Couple", "Couple", "Single Male"], "num_vehicles": [1.0, 1.0, 7.0], "num_persons": [2.0, 2.0, 2.0]})
    persons = pd.DataFrame(
        {"household_id": [0, 0, 1, 1, 2, 2], "person_index": [0, 1] * 3, "age": [40.0, 10, 40, 41, 40, 3], "race": ["White"] * 6,
         "education": ["Bachelor", "Master", "Bachelor", "Bachelor", "Bachelor", "Elementary"], "employment": ["Employed", "Under 16", "Employed", "Employed", "Employed", "Under 16"], "income": [1.0] * 6}
    )  # fmt: skip
    rates = rejection(households, persons)
    assert rates["household_couple_has_two_adults"] == pytest.approx(100 / 3)  # household 0: one adult
    assert rates["household_num_vehicles_range"] == pytest.approx(100 / 3)  # household 2: 7 vehicles
    assert rates["person_education_age_consistency"] == pytest.approx(100 / 6)  # the 10-year-old with a Master
    assert rates["person_preschool_under_5"] == pytest.approx(100 / 6)
    assert rates["household_rejection"] == pytest.approx(200 / 3)
    shipped_h, shipped_p = example_population(100, 1)
    assert rejection(shipped_h, shipped_p)["household_rejection"] == 0.0


def test_the_nested_loop_reaches_its_size_with_both_guidances_in_the_prompt():
    households, persons = example_population(200, 2)
    hh_target, person_target = targets(households, persons, household_joints=[["housing_tenure", "num_vehicles"]], person_joints=[["age", "education"]])
    answer = {"proposal1": {"household": HOUSEHOLD, "members": [ADULT, ADULT, CHILD], "num": 2}, "proposal2": {"household": {**HOUSEHOLD, "housing_tenure": "Rented"}, "members": [ADULT, ADULT], "num": 1}}
    client = FakeClient(lambda task: answer)
    hh, people, trace, report = run_household_synthor(client, hh_target, person_target, n_households=30, n_iterations=3)
    assert len(hh) == 30 and trace["n_households"].tolist() == [10, 20, 30]
    assert report["household_rejection"] == 0.0 and report["failed_plans"] == 0
    assert "Household Guidance:" in client.prompts[0] and "Person Guidance:" in client.prompts[0]
    assert "(age, education)" in client.prompts[1]

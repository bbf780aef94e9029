"""Records of variable length (LLMSYNTHOR.md §1.9, §4.4): a household of 2-5 persons as a nested record.

The paper does not describe the nested proposal format; the choices here ([choice], §6.8):

- **Statistics** at two levels: household marginals/joints over the household table, and person marginals/joints
  over the person table, each person row carrying its household's fields (so a joint may cross levels, e.g.
  ``num_vehicles x employment``). Both use the same two-level binning and signed discrepancy as flat records.
- **Proposal**: ``{"household": {field: category | [min, max]}, "members": [{field: ...}, ...], "num": n}`` - the
  household fields fixed, one spec per member; ``num_persons`` is the number of members (so it cannot disagree
  with the list). Members beyond the maximum household size are dropped, a proposal with fewer than the minimum is
  dropped (both recorded); values are checked and repaired as for flat records (``prompts.check_proposal``).
- **Sampling**: ``num`` households per proposal; household fields and each member drawn inside their specs.
- **Rules** (§4.4, [paper] + the employment-age rule of its Table 6): a household is rejected when it breaks a
  household rule or any member breaks a person rule; the rates are reported, records are not removed.
- The loop is Algorithm 1 with both guidances in the prompt; it has no checkpoint/resume (the flat loop has).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..llm_client import ChatTask, LLMUsage
from .discrepancy import l1_discrepancy, render_guidance, trace_row
from .prompts import Proposal, RawProposal, check_proposal, rescale_counts
from .sampling import sample_proposal
from .statistics import TargetStatistics, target_from_table
from .variables import VariableSet, _num, load_variables

EDUCATION = ["Preschool", "Elementary", "High School", "Bachelor", "Master", "Doctorate"]
HOUSEHOLD_VARIABLES = load_variables(
    [
        {"name": "housing_tenure", "type": "categorical", "categories": ["Owned", "Rented"]},
        {"name": "householder_type", "type": "categorical", "categories": ["Couple", "Single Male", "Single Female"]},
        {"name": "num_vehicles", "type": "integer", "description": "vehicles of the household", "range": [0, 6]},
    ]
)
PERSON_VARIABLES = load_variables(
    [
        {"name": "age", "type": "integer", "range": [0, 99]},
        {"name": "race", "type": "categorical", "categories": ["White", "Black", "Indian", "Asian", "Combined"]},
        {"name": "education", "type": "categorical", "categories": EDUCATION},
        {"name": "employment", "type": "categorical", "categories": ["Under 16", "Employed", "Unemployed", "Military"]},
        {"name": "income", "type": "numeric", "description": "yearly personal income in USD", "range": [0, 4209995]},
    ]
)
MIN_PERSONS, MAX_PERSONS = 2, 5
HOUSEHOLD_RULES = {  # queries selecting the households that break a rule (§4.4)
    "num_persons_range": f"num_persons < {MIN_PERSONS} or num_persons > {MAX_PERSONS}",
    "num_vehicles_range": "num_vehicles < 0 or num_vehicles > 6",
    "couple_has_two_adults": "householder_type == 'Couple' and adults < 2",
    "listed_persons_match": "listed_persons != num_persons",
}
PERSON_RULES = {
    "age_range": "age < 0 or age > 99",
    "preschool_under_5": "age < 5 and education != 'Preschool'",
    "education_age_consistency": "age < 18 and education in ['Bachelor', 'Master', 'Doctorate']",
    "employment_age_consistency": "(age < 16 and employment != 'Under 16') or (age >= 16 and employment == 'Under 16')",
    "income_range": "income < 0 or income >= 4209995",
}


@dataclass
class NestedProposal:
    household: Proposal
    members: list[Proposal]
    num: int


def person_table(households: pd.DataFrame, persons: pd.DataFrame) -> pd.DataFrame:
    """Person rows with their household's fields joined (for cross-level statistics)."""
    return persons.merge(households, on="household_id", how="left", validate="many_to_one")


def targets(households: pd.DataFrame, persons: pd.DataFrame, household_joints=(), person_joints=(), n_main_bins: int = 6):
    """(household target, person target): the person level sees person + household fields."""
    hh_vars = load_variables(HOUSEHOLD_VARIABLES.model_dump()["variables"] + [{"name": "num_persons", "type": "integer", "range": [MIN_PERSONS, MAX_PERSONS]}])
    person_vars = load_variables(PERSON_VARIABLES.model_dump()["variables"] + hh_vars.model_dump()["variables"])
    hh = target_from_table(households, hh_vars, list(household_joints), n_main_bins, source="households")
    person = target_from_table(person_table(households, persons), person_vars, list(person_joints), n_main_bins, source="persons")
    return hh, person


def nested_validator(n_proposals: int):
    """A plan of nested proposals; an unusable plan raises ``ValueError`` (the client re-asks)."""

    def validate(answer: Any) -> tuple[list[NestedProposal], list[str]]:
        if not isinstance(answer, dict):
            raise ValueError('expected {"proposal1": {"household": {...}, "members": [...], "num": n}, ...}')
        keys = sorted((k for k in answer if str(k).startswith("proposal") and str(k)[8:].isdigit()), key=lambda k: int(k[8:]))[:n_proposals]
        out, notes = [], []
        for key in keys:
            entry = answer[key]
            if not isinstance(entry, dict) or not isinstance(entry.get("members"), list):
                notes.append(f"{key}: dropped, no members list")
                continue
            members = entry["members"]
            if len(members) > MAX_PERSONS:
                notes.append(f"{key}: kept the first {MAX_PERSONS} of {len(members)} members")
                members = members[:MAX_PERSONS]
            try:
                household, hh_notes = check_proposal(RawProposal(proposal=entry.get("household") or {}, num=entry.get("num", 1)), HOUSEHOLD_VARIABLES, f"{key}.household")
            except Exception as error:  # pydantic.ValidationError (num) and friends
                notes.append(f"{key}: dropped, {str(error).splitlines()[0]}")
                continue
            notes += hh_notes
            people = []
            for index, member in enumerate(members):
                person, person_notes = check_proposal(RawProposal(proposal=member if isinstance(member, dict) else {}, num=1), PERSON_VARIABLES, f"{key}.members[{index}]")
                notes += person_notes
                if person is not None:
                    people.append(person)
            if household is None or len(people) < MIN_PERSONS:
                notes.append(f"{key}: dropped, needs a valid household and {MIN_PERSONS}-{MAX_PERSONS} valid members")
                continue
            out.append(NestedProposal(household, people, household.num))
        if not out:
            raise ValueError("no usable proposal: " + "; ".join(notes)[:600])
        return out, notes

    return validate


def sample_households(proposals: list[NestedProposal], n: int, rng: np.random.Generator, start_id: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = rescale_counts([p.num for p in proposals], n)
    households, persons = [], []
    next_id = start_id
    for proposal, count in zip(proposals, counts, strict=True):
        if count == 0:
            continue
        hh = sample_proposal(proposal.household, count, HOUSEHOLD_VARIABLES, rng)
        hh.insert(0, "household_id", np.arange(next_id, next_id + count))
        hh["num_persons"] = float(len(proposal.members))
        for index, member in enumerate(proposal.members):
            people = sample_proposal(member, count, PERSON_VARIABLES, rng)
            people.insert(0, "person_index", index)
            people.insert(0, "household_id", hh["household_id"].to_numpy())
            persons.append(people)
        households.append(hh)
        next_id += count
    if not households:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(households, ignore_index=True), pd.concat(persons, ignore_index=True)


def rejection(households: pd.DataFrame, persons: pd.DataFrame) -> dict[str, float]:
    """Percent of households breaking each household rule, of persons breaking each person rule, and of
    households rejected (a household rule, or any member breaking a person rule)."""
    if len(households) == 0:
        return {"household_rejection": float("nan")}
    people = persons.reset_index(drop=True)
    bad_person = np.zeros(len(people), dtype=bool)
    out: dict[str, float] = {}
    for name, query in PERSON_RULES.items():
        mask = np.zeros(len(people), dtype=bool)
        mask[people.query(query).index.to_numpy()] = True
        out[f"person_{name}"] = 100.0 * float(mask.mean())
        bad_person |= mask
    out["person_rejection"] = 100.0 * float(bad_person.mean())
    summary = people.assign(adult=people["age"] >= 18, bad=bad_person).groupby("household_id").agg(
        adults=("adult", "sum"), listed_persons=("adult", "size"), any_bad=("bad", "any")
    )
    frame = households.set_index("household_id").join(summary).fillna({"adults": 0, "listed_persons": 0, "any_bad": False}).reset_index()
    bad_household = frame["any_bad"].to_numpy(bool).copy()
    for name, query in HOUSEHOLD_RULES.items():
        mask = np.zeros(len(frame), dtype=bool)
        mask[frame.query(query).index.to_numpy()] = True
        out[f"household_{name}"] = 100.0 * float(mask.mean())
        bad_household |= mask
    out["household_rejection"] = 100.0 * float(bad_household.mean())
    return out


PROMPT = """You simulate realistic family households of {min_p}-{max_p} persons. Each proposal fixes the household \
fields and lists one spec per member (one category or [min, max] range per field); num households are drawn from it.
Household fields:
{household_desc}
Person fields:
{person_desc}
Rules: a couple household has at least two adults; a child under 5 is in Preschool; a person under 18 has at most \
High School; a person under 16 has employment "Under 16". Output JSON only:
{{"n_proposals": {n_proposals}, "proposal1": {{"household": {{...}}, "members": [{{...}}, {{...}}], "num": 5}}, ...}}

This round: the synthetic data has {n_current} households; write {n_proposals} proposals whose num add up to \
{n_samples}. Under-represented cells (+gap, target and synthetic frequencies):
Household Guidance:
{household_guide}
Person Guidance:
{person_guide}"""


def run_household_synthor(client, hh_target: TargetStatistics, person_target: TargetStatistics, n_households: int, n_iterations: int, n_proposals: int = 5, seed: int = 0, top_k: int = 4):
    """Algorithm 1 for nested records: returns (households, persons, trace, report)."""
    base, extra = divmod(n_households, n_iterations)
    households, persons = pd.DataFrame(), pd.DataFrame()
    trace, usage, notes_total, failed = [], LLMUsage(), 0, 0
    validate = nested_validator(n_proposals)
    deferred = 0
    for t in range(1, n_iterations + 1):
        batch = base + (1 if t <= extra else 0) + deferred
        hh_stats = hh_target.statistics(households)
        person_stats = person_target.statistics(person_table(households, persons) if len(persons) else persons)
        hh_guide, hh_joint = render_guidance(hh_stats, top_k, top_k)
        person_guide, person_joint = render_guidance(person_stats, top_k, top_k)
        content = PROMPT.format(
            min_p=MIN_PERSONS, max_p=MAX_PERSONS, household_desc=HOUSEHOLD_VARIABLES.describe(), person_desc=PERSON_VARIABLES.describe(),
            n_proposals=n_proposals, n_current=len(households), n_samples=batch,
            household_guide=hh_guide + ("\n" + hh_joint if hh_target.joints else ""),
            person_guide=person_guide + ("\n" + person_joint if person_target.joints else ""),
        )
        task = ChatTask(f"households:proposal:{t}", [{"role": "user", "content": content}], "household_plan", None, validate, seed_offset=t)
        results, used = client.run([task], description=f"households:t={t}")
        usage.add(used)
        if results[0].ok:
            proposals, notes = results[0].value
            notes_total += len(notes)
            new_hh, new_persons = sample_households(proposals, batch, np.random.default_rng((seed, t)), start_id=len(households))
            households = pd.concat([households, new_hh], ignore_index=True)
            persons = pd.concat([persons, new_persons], ignore_index=True)
            deferred = 0
        else:
            failed += 1
            deferred = batch
        row = {"iteration": t, "n_households": len(households), "n_persons": len(persons)}
        if len(households):
            flat = person_table(households, persons)
            hh_main = hh_target.statistics(households, refine_marginals=False)
            person_main = person_target.statistics(flat, refine_marginals=False)
            row["discrepancy_l1"] = l1_discrepancy(hh_main + person_main)
            row.update({f"household.{k}": v for k, v in trace_row(hh_target, households, hh_main).items()})
            row.update({f"person.{k}": v for k, v in trace_row(person_target, flat, person_main).items()})
        trace.append(row)
    report = {"failed_plans": failed, "repairs": notes_total, "usage": usage.as_dict(), **(rejection(households, persons) if len(households) else {})}
    return households, persons, pd.DataFrame(trace), report


def example_population(n_households: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small, rule-abiding household population shipped as the example input (an illustrative generator written
    for this project, NOT the paper's ACS PUMS data)."""
    rng = np.random.default_rng(seed)
    households, persons = [], []
    for hid in range(n_households):
        kind = rng.choice(["Couple", "Single Male", "Single Female"], p=[0.7, 0.1, 0.2])
        size = int(rng.choice([2, 3, 4, 5], p=[0.4, 0.25, 0.22, 0.13]))
        head_age = int(np.clip(rng.normal(47, 14), 20, 95))
        ages = [head_age]
        if kind == "Couple":
            ages.append(int(np.clip(head_age + rng.normal(0, 4), 18, 99)))
        while len(ages) < size:
            ages.append(int(rng.integers(0, 18)) if head_age < 60 or rng.random() < 0.5 else int(np.clip(head_age + 25 + rng.normal(0, 5), 60, 99)))
        tenure = "Owned" if rng.random() < (0.75 if head_age > 40 else 0.45) else "Rented"
        race = rng.choice(["White", "Black", "Indian", "Asian", "Combined"], p=[0.65, 0.25, 0.02, 0.03, 0.05])
        incomes = []
        for i, age in enumerate(ages):
            if age < 5:
                education, employment, income = "Preschool", "Under 16", 0.0
            elif age < 16:
                education, employment, income = ("Elementary" if age < 13 else "High School"), "Under 16", 0.0
            else:
                education = "High School" if age < 18 else str(rng.choice(EDUCATION[2:], p=[0.45, 0.35, 0.15, 0.05]))
                employment = str(rng.choice(["Employed", "Unemployed", "Military"], p=[0.72, 0.26, 0.02])) if age < 67 else "Unemployed"
                income = float(np.round(rng.lognormal(10.6, 0.8) if employment != "Unemployed" else rng.uniform(0, 15000), 0))
            incomes.append(income)
            persons.append({"household_id": hid, "person_index": i, "age": float(age), "race": race, "education": education, "employment": employment, "income": min(income, 4209994.0)})
        vehicles = int(np.clip(rng.poisson(1 + sum(incomes) / 60000), 0, 6))
        households.append({"household_id": hid, "housing_tenure": tenure, "householder_type": kind, "num_vehicles": float(vehicles), "num_persons": float(size)})
    return pd.DataFrame(households), pd.DataFrame(persons)


def describe_plan_example() -> str:
    """A worked example of one nested proposal, for the docs."""
    return (
        '{"household": {"housing_tenure": "Owned", "householder_type": "Couple", "num_vehicles": [1, 2]}, '
        '"members": [{"age": [35, 50], "race": "White", "education": "Bachelor", "employment": "Employed", '
        f'"income": [40000, 90000]}}, ...], "num": 8}}  (income range 0~{_num(4209995)})'
    )


__all__ = ["VariableSet", "example_population", "nested_validator", "rejection", "run_household_synthor", "sample_households", "targets"]
